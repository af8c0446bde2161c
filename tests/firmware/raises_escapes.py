"""Firmware whose crash note carries terminal escape sequences (a hostile core)."""

from amplink.remote import Core


def main(core: Core) -> None:
    raise RuntimeError("\x1b[2J\x1b]0;owned\x07boom\rhidden")
