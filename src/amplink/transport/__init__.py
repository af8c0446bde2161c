"""Transports beside the native one: what gives a virtio device its memory window and
its notify path when the peer is not an amplink core behind a mailbox.

:mod:`amplink.transport.vhost_user` serves the device role to a vhost-user front end
(a Linux guest under User-Mode Linux or QEMU).  The native transport is the
remoteproc vdev (:mod:`amplink.remoteproc.vdev`) kicked through the mailbox
(:mod:`amplink.mailbox.mu_path`).
"""
