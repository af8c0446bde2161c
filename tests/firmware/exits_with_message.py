"""Firmware that gives up at once as a Python program would: ``SystemExit`` with a message."""

from amplink.remote import Core


def main(core: Core) -> None:
    raise SystemExit("fatal: no sensor on I2C bus 2")
