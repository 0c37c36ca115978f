"""Run one Portside service and take its whole process group down with it.

``python -m bench._reaper -- ARGV...`` is started by :mod:`bench.portside` as a
session leader with ``PR_SET_PDEATHSIG=SIGTERM``.  The service runs in the same
process group, and so do whatever it forks (gateway workers, Celery pool
children, gunicorn workers).  On SIGTERM -- from the harness, or from the kernel
because the harness died, even by ``os._exit`` or SIGKILL -- the group gets
SIGTERM, a grace period, then SIGKILL.  When the service exits on its own, the
group is killed too, so no grandchild outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_S = 10.0


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m bench._reaper -- ARGV...", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    child = subprocess.Popen(argv)
    while not stopping and child.poll() is None:
        time.sleep(0.1)
    if child.poll() is None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    code = child.returncode if child.returncode is not None else -9
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.killpg(0, signal.SIGKILL)  # leftovers of the group, and this process
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
