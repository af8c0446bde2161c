"""Firmware that announces its service and then never serves it (a hung core)."""

import threading

from amplink.remote import Core


def main(core: Core) -> None:
    core.create_endpoint("rpmsg-openamp-demo-channel")
    threading.Event().wait()
