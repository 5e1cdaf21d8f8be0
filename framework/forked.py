"""One function run in a forked child while the command goes on (the second core's share of a backtest).

A large backtest ends with two long, independent pieces of work: packing its records into the
ledger and writing its CSV artifacts (a million orders and as many fills each). They need the same
columns and nothing from each other, so the CSVs are written by a child forked once the columns
exist: it sees them without a copy, writes its files and leaves with ``os._exit`` (no interpreter
teardown, no ``atexit``, the parent's ledger connection never touched). The child only ever speeds
things up: where it cannot start (no ``fork``, other Python threads running) or when it fails or
never finishes, the caller does the work itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

WAIT = 300.0          # seconds a caller waits for the child before doing the work itself


def can_fork() -> bool:
    """Whether forking a helper is safe here: the platform has ``fork`` and no other Python thread
    runs (a thread's locks would be copied held). The figures helper asks it too."""
    import threading

    return hasattr(os, "fork") and threading.active_count() == 1


@dataclass
class Forked:
    """A forked child running one function; ``wait`` tells whether it finished it."""

    pid: int

    @classmethod
    def start(cls, work: Callable[[], None]) -> Forked | None:
        """Fork a child that runs ``work``, or None where forking is not safe here (``can_fork``)."""
        import gc

        if not can_fork():
            return None
        # the parent's collection passes would write into every object it had at the fork, copying
        # the pages the child shares with it: they skip those objects until the child is done
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            gc.unfreeze()
            return None
        if pid == 0:                                  # the child
            code = 1
            try:
                import signal

                signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
                gc.disable()      # no collection passes: they would copy the parent's pages by touching them
                work()
                code = 0
            except BaseException:  # noqa: BLE001 - the parent does the work again and sees the error there
                code = 1
            finally:
                os._exit(code)
        return cls(pid)

    def wait(self, timeout: float = WAIT) -> bool:
        """Whether the child finished its work (exit 0) within ``timeout`` seconds; a child still
        running then is stopped. Either way it is reaped."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                _thaw()
                return os.waitstatus_to_exitcode(status) == 0
            if time.monotonic() > deadline:
                self.stop()
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def stop(self) -> None:
        """Stop the child (when the command fails or gives up on it) and reap it."""
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        _thaw()


def _thaw() -> None:
    """The child is gone: the parent's objects frozen at the fork are collected as before."""
    import gc

    gc.unfreeze()
