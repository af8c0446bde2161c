"""A real Linux kernel as amplink's peer: User-Mode Linux (UML) booted with its rpmsg
stack talking to a firmware served over vhost-user (:mod:`amplink.remote.vhost`).

``tools/uml/build-kernel.sh`` builds the kernel into a cache folder; :mod:`.boot`
finds it and boots a guest that runs one command and powers off; :mod:`.guest_init` is
that guest's PID 1.  The conformance tests (``make test-linux``) and ``amplink bench``
use them.
"""
