"""Firmware whose main fails at start with a chained exception: its crash note shows
the firmware's frames and both exceptions, none of amplink's loader frames."""

from amplink.remote import Core


def read_setting(name: str) -> int:
    settings: dict[str, int] = {}
    return settings[name]


def main(core: Core) -> None:
    try:
        read_setting("rate")
    except KeyError as exc:
        raise RuntimeError("no rate configured") from exc
