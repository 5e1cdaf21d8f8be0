"""Leases (SPEC §17): one process per account at a time.

``execute``, ``close`` and the nightly take the account's lease before they touch the venue. A
second command on the same account waits a short while, then stops naming the holder. A lease
whose process is gone (same host, no such pid) or whose time ran out is taken over.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from typing import Any

from framework.ledger.records import LeaseRecord


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseQueries:
    """Mixed into ``Ledger``: take, renew and release an account's lease."""

    db: sqlite3.Connection

    def tx(self) -> Any:  # provided by Ledger
        raise NotImplementedError

    def lease_held(self, account: str) -> bool:
        """Whether a live process holds ``account``'s lease: on this host, its process still runs
        (however long it has held it); elsewhere, its time has not run out."""
        held = self.lease(account)
        if held is None:
            return False
        if held.host == socket.gethostname():
            return _alive(held.pid)
        return held.expires_at > time.time()

    def lease(self, account: str) -> LeaseRecord | None:
        row = self.db.execute("SELECT account, pid, host, command, run_id, acquired_at, expires_at FROM leases "
                              "WHERE account=?", (account,)).fetchone()
        return None if row is None else LeaseRecord(*row)

    def try_lease(self, account: str, command: str, ttl_s: float, pid: int | None = None,
                  host: str | None = None) -> tuple[bool, LeaseRecord | None]:
        """Take the lease unless a live process holds it; returns (taken, the holder or the taken lease)."""
        pid = os.getpid() if pid is None else pid
        host = socket.gethostname() if host is None else host
        now = time.time()
        with self.tx():
            held = self.lease(account)
            if held is not None and not (held.pid == pid and held.host == host):
                gone = held.host == host and not _alive(held.pid)
                if held.expires_at > now and not gone:
                    return False, held
            self.db.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?,?)",
                            (account, pid, host, command, None, now, now + ttl_s))
        return True, self.lease(account)

    def renew_lease(self, account: str, ttl_s: float, run_id: str | None = None) -> None:
        with self.tx():
            self.db.execute("UPDATE leases SET expires_at=?, run_id=COALESCE(?, run_id) WHERE account=? AND pid=? "
                            "AND host=?", (time.time() + ttl_s, run_id, account, os.getpid(), socket.gethostname()))

    def release_lease(self, account: str) -> None:
        with self.tx():
            self.db.execute("DELETE FROM leases WHERE account=? AND pid=? AND host=?",
                            (account, os.getpid(), socket.gethostname()))
