"""Run web, gateway, worker and beat as child processes, and stop them all together.

Written by hand rather than with honcho or supervisord: we need four children, signal
forwarding to whole process groups (gunicorn and celery fork their own workers) and a
parent-death signal, which is a few dozen lines.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 20.0


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child if the supervisor dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child in a process group of its own."""
        self.process = subprocess.Popen(
            list(self.argv), start_new_session=True, preexec_fn=_die_with_parent)

    def signal(self, signum: int) -> None:
        """Send a signal to the child's whole process group."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass


class Supervisor:
    """Start children; when one exits or a stop signal arrives, stop the rest."""

    def __init__(self, children: list[Child], *, grace: float = STOP_GRACE_SECONDS) -> None:
        self.children = children
        self.stopping = False
        self.grace = grace

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        """Run until a signal or a child's exit; return the exit status."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            child.start()
        failed: Child | None = None
        while not self.stopping:
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    failed = child
                    self.stopping = True
            time.sleep(0.2)
        if failed is not None:
            code = failed.process.returncode if failed.process else "?"
            print(f"portside: {failed.name} exited ({code}); stopping the rest",
                  file=sys.stderr, flush=True)
        self.stop_all()
        return 1 if failed is not None else 0

    def stop_all(self) -> None:
        """SIGTERM every child group, wait for the grace period, then SIGKILL what is left."""
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"portside: {child.name} did not stop in time; killing it",
                      file=sys.stderr, flush=True)
            child.signal(signal.SIGKILL)  # also reaps grandchildren left in the group
            child.process.wait()
        print("portside: all processes stopped", file=sys.stderr, flush=True)
