"""Host side of the sensor example: boot the sensor board, read samples, stream some.

.venv/bin/python examples/sensor_host.py
"""

from __future__ import annotations

import struct
from pathlib import Path

from amplink.board import Board, load_board

SAMPLE = struct.Struct("<Ii")


def main() -> list[tuple[int, int]]:
    """Read one sample, then ask for a stream of five; returns the samples."""
    with Board(load_board(Path(__file__).with_name("sensor-board.toml"))) as board:
        chan = board.core("sensor").wait_channel("sensor-service", timeout=10)
        with chan.create_ept() as ept:
            ept.send(b"read")
            samples = [SAMPLE.unpack(ept.recv(timeout=10).data)]
            ept.send(b"rate 5")
            samples += [SAMPLE.unpack(ept.recv(timeout=10).data) for _ in range(5)]
            ept.send(b"calibrate")
            print(ept.recv(timeout=10).data.decode())
    for seq, milli_c in samples:
        print(f"sample {seq}: {milli_c / 1000:.3f} C")
    return samples


if __name__ == "__main__":
    main()
