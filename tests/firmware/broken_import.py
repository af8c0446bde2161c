"""Firmware that passes the host's checks (it compiles, it has main) but dies as soon
as the core runs it: an import that fails."""

import amplink_test_no_such_module  # noqa: F401


def main(core):
    core.run()
