"""Firmware that passes the host's checks (it compiles, it has main) but calls
sys.exit() while it is imported, before its main(core) can run."""

import sys

sys.exit(3)


def main(core):
    core.run()
