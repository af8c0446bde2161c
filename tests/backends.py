"""The two rpmsg backends the process-level rpmsg tests run over: firmware tables that
ask for a virtio rpmsg vdev (amplink's default) or for a GLINK edge."""

from amplink.remoteproc.layout import glink_rsc_table

BACKENDS = ("virtio", "glink")


def table_for(backend: str):
    """The resource table a Python firmware is packed with for ``backend``."""
    return glink_rsc_table() if backend == "glink" else None
