"""A user's program whose main thread sits in ``recv()`` (with spinning off it takes the
core's interrupt itself; with it on, it drains the ring itself) while SIGINT strikes it
at random moments: argv is the count of interrupts, a random seed, the rpmsg backend
(virtio or glink) and ``spin`` or ``nospin``.  Then the channel
must still carry messages, the stop be prompt and nothing be left behind.  Run by
tests/test_rproc.py as a process of its own: no Ctrl-C may reach pytest.  Prints
``OK`` and what it measured on success."""

import os
import random
import signal
import sys
import threading
import time

from amplink.host import Rproc, RprocConfig
from backends import table_for
from resources import snapshot

SERVICE = "rpmsg-openamp-demo-channel"


def main() -> None:
    # Ctrl-C raises KeyboardInterrupt as Python's own handler does, but only inside the
    # round trips: one that struck this program's own bookkeeping (starting the
    # shooter, counting, the except clause) would end the program, not test amplink.
    # (A parent that ignores SIGINT would otherwise have us inherit SIG_IGN.)
    in_round_trip = [False]

    def ctrl_c(signum: int, frame: object) -> None:
        if in_round_trip[0]:
            in_round_trip[0] = False  # once per round trip, not in the except clause
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, ctrl_c)
    count = int(sys.argv[1])
    random.seed(int(sys.argv[2]))
    before = snapshot()
    main_ident = threading.get_ident()
    shooting = threading.Event()
    shooting.set()

    def shoot() -> None:  # Ctrl-C every 0-3 ms: anywhere in send, recv, the handlers
        while shooting.is_set():
            time.sleep(random.uniform(0, 0.003))
            signal.pthread_kill(main_ident, signal.SIGINT)

    rp = Rproc(
        f"ctrl-c-{os.getpid()}",
        "amplink.firmware.echo",
        config=RprocConfig(spin=sys.argv[4] == "spin"),
        table=table_for(sys.argv[3]),
    )
    rp.start()
    ept = rp.wait_channel(SERVICE, 10).create_ept()
    shooter = threading.Thread(target=shoot)
    shooter.start()
    interrupts = i = 0
    while interrupts < count:
        try:
            in_round_trip[0] = True
            i += 1
            ept.send(b"%d" % i)
            while ept.recv(10).data != b"%d" % i:
                pass  # the echo of a round trip a Ctrl-C cut short
            in_round_trip[0] = False
        except KeyboardInterrupt:
            interrupts += 1
    shooting.clear()
    shooter.join()
    while True:  # the echoes still on their way (each within a second, or none left)
        try:
            ept.recv(1)
        except OSError:
            break
    for j in range(20):  # the channel still works
        ept.send(b"after %d" % j)
        assert ept.recv(10).data == b"after %d" % j
    t0 = time.monotonic()
    rp.stop()
    stop_s = time.monotonic() - t0
    assert snapshot() == before, (before, snapshot())
    print(f"OK {interrupts} interrupts, {i} round trips, stop {stop_s:.2f} s", flush=True)


if __name__ == "__main__":
    main()
