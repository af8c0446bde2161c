"""A vdev's status byte, features and vring fields, read and written in the loaded table.

For remoteproc vdevs there is no virtio transport register file: the status byte, the
device features (``dfeatures``, offered by the firmware) and the negotiated features
(``gfeatures``, written by the host) live in the vdev entry of the resource table that
both sides map.  This class is the accessor both roles use; it holds the entry's offset
and never re-parses the table.
"""

from __future__ import annotations

import struct

from amplink.virtio.constants import VIRTIO_CONFIG_S_DRIVER_OK
from amplink.virtio.virtqueue import Window
from amplink.wire import rsc_table as rt

_U32 = struct.Struct("=I")


class VdevConfig:
    """Live view of one vdev entry of a resource table that lies in a window."""

    def __init__(self, window: Window, table_offset: int, vdev: rt.Vdev) -> None:
        if vdev.offset < 0:
            raise ValueError("VdevConfig needs a vdev parsed from the table (with its offset)")
        self.vdev = vdev
        self._base = table_offset + vdev.offset
        end = rt.VDEV_VRINGS_OFF + rt.VRING.size * len(vdev.vrings)
        self._mem = window.view(self._base, end)

    def _u32(self, off: int) -> int:
        return int(_U32.unpack_from(self._mem, off)[0])

    def _set_u32(self, off: int, value: int) -> None:
        _U32.pack_into(self._mem, off, value)

    @property
    def status(self) -> int:
        """The vdev status byte (ACKNOWLEDGE, DRIVER, DRIVER_OK...)."""
        return int(self._mem[rt.VDEV_STATUS_OFF])

    @status.setter
    def status(self, value: int) -> None:
        self._mem[rt.VDEV_STATUS_OFF] = value

    @property
    def driver_ok(self) -> bool:
        """True once the driver set DRIVER_OK."""
        return bool(self.status & VIRTIO_CONFIG_S_DRIVER_OK)

    @property
    def dfeatures(self) -> int:
        """The features the device offers."""
        return self._u32(rt.VDEV_DFEATURES_OFF)

    @property
    def gfeatures(self) -> int:
        """The features the driver accepted."""
        return self._u32(rt.VDEV_GFEATURES_OFF)

    @gfeatures.setter
    def gfeatures(self, value: int) -> None:
        self._set_u32(rt.VDEV_GFEATURES_OFF, value)

    def negotiate(self, supported: int) -> int:
        """Driver side: accept ``dfeatures & supported`` and publish it in gfeatures."""
        accepted = self.dfeatures & supported
        self.gfeatures = accepted
        return accepted

    def features(self) -> int:
        """Both sides: the negotiated set, ``dfeatures & gfeatures``."""
        return self.dfeatures & self.gfeatures

    def _vring_field(self, index: int, field_off: int) -> int:
        return rt.VDEV_VRINGS_OFF + rt.VRING.size * index + field_off

    def vring_da(self, index: int) -> int:
        """The device address of vring ``index``."""
        return self._u32(self._vring_field(index, rt.VRING_DA_OFF))

    def vring_notifyid(self, index: int) -> int:
        """The notify id of vring ``index``."""
        return self._u32(self._vring_field(index, rt.VRING_NOTIFYID_OFF))

    def set_vring(self, index: int, da: int, notifyid: int) -> None:
        """Host side: publish where vring ``index`` lives and its notify id."""
        self._set_u32(self._vring_field(index, rt.VRING_DA_OFF), da)
        self._set_u32(self._vring_field(index, rt.VRING_NOTIFYID_OFF), notifyid)
