"""The other side of a mailbox unit in a separate process, for the stress tests.

``python hw_peer.py <mu|rockchip> <region fd> <count>``: exchanges ``count`` messages
each way with the test process (which drives the other side) by polling registers:
sends 0..count-1 whenever the unit can take one, and checks that what it receives is
exactly 0..count-1 in order.  Exit code 0 when all arrived, 1 on a lost, duplicated or
reordered message.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from amplink.memory import SharedRegion
from hw_stress import STRESS_CHANNELS, exchange, make_unit


def main() -> int:
    kind, fd, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    region = SharedRegion.attach(fd, "peer")
    try:
        unit = make_unit(kind, region)
        return exchange(kind, unit, "b", count, STRESS_CHANNELS)
    finally:
        region.close()


if __name__ == "__main__":
    sys.exit(main())
