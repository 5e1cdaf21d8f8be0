"""Risk decisions of one approval, kept as columns until someone reads them one by one.

A wide universe with a binding ``max_positions`` rejects hundreds of symbols a cycle: a backtest of
500 symbols over 5,000 bars makes a million decisions. Building a frozen ``RiskDecision`` for each
costs more than the whole risk check, and a backtest only writes them to the ledger, which takes
columns. ``Decisions`` is the sequence ``RiskResult.decisions`` holds: single records and blocks of
same-rule records (``DecisionBlock``, arrays). Reading it like a tuple (iterating, indexing,
comparing, ``+`` with a tuple) makes the ``RiskDecision`` records, once; the backtest journal asks
for ``columns()`` instead and never makes them. Same values either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from framework.types import RiskDecision


@dataclass(frozen=True, slots=True, eq=False)
class DecisionBlock:
    """Records of one rule and action for several symbols at one time.

    The reason of record k is ``f"{head}{values[k]:.4f}{tail}"``."""

    time: np.datetime64
    symbols: list[str]
    rule: str
    action: str
    requested: np.ndarray
    approved: np.ndarray
    head: str
    values: np.ndarray
    tail: str = ""

    def __len__(self) -> int:
        return len(self.symbols)

    def reasons(self) -> list[str]:
        head, tail = self.head, self.tail
        return [f"{head}{v:.4f}{tail}" for v in self.values.tolist()]

    def records(self) -> list[RiskDecision]:
        t, rule, action = self.time, self.rule, self.action
        return [RiskDecision(t, s, rule, action, r, a, why) for s, r, a, why in
                zip(self.symbols, self.requested.tolist(), self.approved.tolist(), self.reasons())]


class Decisions(Sequence):
    """An immutable sequence of ``RiskDecision`` made of records and ``DecisionBlock`` parts."""

    __slots__ = ("_len", "_parts", "_records")

    def __init__(self, parts: list[RiskDecision | DecisionBlock] | tuple = ()):
        self._records: tuple[RiskDecision, ...] | None = None
        self._parts: tuple[RiskDecision | DecisionBlock, ...] = ()
        self._len = 0
        if not parts:                # most cycles decide nothing
            return
        self._parts = tuple(p for p in parts if not isinstance(p, DecisionBlock) or len(p))
        self._len = sum(len(p) if isinstance(p, DecisionBlock) else 1 for p in self._parts)

    @property
    def parts(self) -> tuple[RiskDecision | DecisionBlock, ...]:
        return self._parts

    def records(self) -> tuple[RiskDecision, ...]:
        """The decisions as ``RiskDecision`` records (made on first use, then kept)."""
        if self._records is None:
            out: list[RiskDecision] = []
            for p in self._parts:
                if isinstance(p, DecisionBlock):
                    out.extend(p.records())
                else:
                    out.append(p)
            self._records = tuple(out)
        return self._records

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __getitem__(self, i):
        return self.records()[i]

    def __iter__(self) -> Iterator[RiskDecision]:
        return iter(self.records())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Decisions, tuple, list)):
            return self.records() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.records())

    def __add__(self, other: Sequence) -> tuple[RiskDecision, ...]:
        return self.records() + tuple(other)

    def __radd__(self, other: Sequence) -> tuple[RiskDecision, ...]:
        return tuple(other) + self.records()

    def __repr__(self) -> str:
        return f"Decisions({list(self.records())!r})"
