"""remoteproc: the remote processor lifecycle, firmware images, resource tables,
crashes and recovery, platform drivers, and the virtio devices and subdevices a core
carries.  It never names rpmsg: which drivers bind to a core's vdevs and subdevices is
decided above it (:mod:`amplink.bindings`); the host's API is :mod:`amplink.host`.

This package face imports nothing, so that a core process can use
:mod:`amplink.remoteproc.vdev` without loading the ELF reader."""
