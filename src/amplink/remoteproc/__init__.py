"""remoteproc: remote processor lifecycle, resource tables and memory layout."""

from amplink.remoteproc.rproc import CRASHED, OFFLINE, RUNNING, Rproc

__all__ = ["CRASHED", "OFFLINE", "RUNNING", "Rproc"]
