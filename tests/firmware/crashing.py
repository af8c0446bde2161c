"""Firmware that announces its service, then fails on the first message it receives."""

from amplink.remote import Core


def main(core: Core) -> None:
    def boom(ept, data, src):
        raise SystemExit(7)

    core.create_endpoint("rpmsg-openamp-demo-channel", boom)
    core.run()
