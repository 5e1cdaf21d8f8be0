"""Frozen records the ledger's named queries return."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One row of the ``orders`` table."""

    run_id: str
    cycle_seq: int | None
    client_order_id: str
    broker_id: str | None
    time: str
    symbol: str
    side: str
    qty: float
    type: str
    limit_price: float | None
    leg: str | None
    ref_price: float | None
    status: str
    filled_qty: float
    avg_price: float | None
    message: str | None
    updated_at: str | None
    account: str | None

    @staticmethod
    def of(row: dict) -> OrderRecord:
        values: dict[str, Any] = {f.name: row.get(f.name) for f in fields(OrderRecord)}
        return OrderRecord(**values)

    @property
    def side_sign(self) -> int:
        return 1 if self.side == "buy" else -1


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """Who holds an account: process id and host, the command, until when (epoch seconds)."""

    account: str
    pid: int
    host: str
    command: str | None
    run_id: str | None
    acquired_at: float
    expires_at: float

    def describe(self) -> str:
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on {self.host}{what}"


@dataclass(frozen=True, slots=True)
class PromotionRecord:
    id: int
    strategy: str
    action: str
    stage: str
    config_hash: str
    who: str | None
    time: str
    evidence: str | None
    reason: str | None
