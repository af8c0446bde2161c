"""Firmware that fails as soon as it runs: its core crashes right after every boot."""

from amplink.remote import Core


def main(core: Core) -> None:
    raise RuntimeError("boom at start")
