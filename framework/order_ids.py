"""What names Parity's orders and fills: the legs of a cycle, batch ids, client order ids and the
trade ids of adjusting fills.

Client order ids are deterministic in (strategy, batch, symbol, leg), which is what makes re-runs
and crash recovery safe (SPEC §11), and carry Parity's prefix, which is how an order is known to be
Parity's and not the user's (SPEC §17). ``framework.client_ids`` makes the same ids in bulk.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import numpy as np


class Leg(StrEnum):
    """Which part of a cycle an order belongs to; part of its client order id.

    Smart execution adds steps to a leg (``add-r1``, ``add-m``): see ``smart_leg``."""

    REDUCE = "reduce"
    ADD = "add"
    CLOSE = "close"
    RECONCILE = "reconcile"
    STOP_LOSS = "stop"        # a protective stop that fired (SPEC §20)
    TAKE_PROFIT = "take"      # a protective take-profit that fired


PROTECTIVE_LEGS = (Leg.STOP_LOSS.value, Leg.TAKE_PROFIT.value)


def smart_leg(leg: str, step: int, last: bool) -> str:
    """The leg of step ``step`` of a smart execution of ``leg`` (step 0 is the leg itself)."""
    if step == 0:
        return leg
    return f"{leg}-m" if last else f"{leg}-r{step}"


def base_leg(leg: str) -> str:
    """The leg a smart step belongs to (``add-r2`` -> ``add``)."""
    return leg.split("-", 1)[0]


OWNED_PREFIX = "p-"
ADJUSTING = ":adj:"


def adjusting_trade_id(trade_id: str, kind: str, n: int) -> str:
    """The trade id of an adjusting fill row (a correction, a bust, a reversal) of fill ``trade_id``:
    a new id, so the ledger's unique (account, trade id) index keeps the original and every
    adjustment (SPEC §17: corrections and busts are never dropped)."""
    return f"{trade_id}{ADJUSTING}{kind}:{n}"


def is_adjusting(trade_id: str | None) -> bool:
    """Whether a fill row adjusts an earlier one (its quantity may be negative: a reversal)."""
    return bool(trade_id) and ADJUSTING in str(trade_id)


def owned(client_order_id: str | None) -> bool:
    """Whether Parity placed this order (its client order id carries Parity's prefix, SPEC §17)."""
    return bool(client_order_id) and client_order_id.startswith(OWNED_PREFIX)  # type: ignore[union-attr]


def batch_key(strategy: str, t: np.datetime64, scope: str = "") -> str:
    """Deterministic id of a batch: strategy, the account's environment scope (empty for a
    backtest; ``paper``, ``live``, ``shadow``) and its UTC time to the second."""
    stamp = np.datetime_as_string(np.datetime64(t, "s"), unit="s").replace("-", "").replace(":", "")
    return f"{strategy}{'.' + scope if scope else ''}@{stamp}Z"


def strategy_of_batch(batch_id: str) -> str:
    """The strategy a batch id belongs to, without the account's scope (``s.paper@...`` -> ``s``)."""
    prefix = batch_id.split("@")[0]
    head, _, tail = prefix.rpartition(".")
    return head if head and tail in ("paper", "live", "shadow") else prefix


def batch_keys(strategy: str, times: np.ndarray) -> list[str]:
    """``batch_key`` for many times at once."""
    stamps = np.datetime_as_string(np.asarray(times).astype("datetime64[s]"), unit="s")
    return [f"{strategy}@{s.replace('-', '').replace(':', '')}Z" for s in stamps.tolist()]


def client_order_id(batch_id: str, symbol: str, leg: str) -> str:
    """Deterministic client order id for (strategy, batch, symbol, leg); at most 64 characters.

    Re-running a batch yields the same ids, which is what makes re-runs and crash recovery safe.
    The batch id carries the account's environment for paper, live and shadow runs (see
    ``batch_key``), so those ids never meet a backtest's. ``p-`` marks the orders Parity owns.
    """
    raw = f"{batch_id}|{symbol}|{leg}"
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    readable = f"{batch_id.split('@')[0][:16]}-{batch_id.split('@')[-1]}-{symbol.replace('/', '')}-{leg}"
    if len(readable) > 48:      # keep the leg readable (``leg_of``): shorten what comes before it
        readable = readable[:47 - len(leg)] + "-" + leg
    return f"{OWNED_PREFIX}{readable}-{digest}"


def paired_exit_id(client_id: str) -> str:
    """The client order id of the other half of a protective pair (``stop`` <-> ``take``, SPEC §20):
    the same batch, symbol and digest, so a venue adapter that knows one half (an Alpaca OCO order
    carries one client order id for both, Alpaca-API#115) can name the other."""
    head, leg, digest = client_id.rsplit("-", 2)
    other = {Leg.STOP_LOSS.value: Leg.TAKE_PROFIT.value, Leg.TAKE_PROFIT.value: Leg.STOP_LOSS.value}[leg]
    return f"{head}-{other}-{digest}"


def leg_of(client_id: str | None) -> str:
    """The (last part of the) leg an owned client order id was made for (``stop``, ``take``, ``add``,
    ``r1`` for ``add-r1``); empty for an order Parity does not own."""
    if not owned(client_id):
        return ""
    parts = client_id.rsplit("-", 2)   # type: ignore[union-attr]
    return parts[-2] if len(parts) == 3 else ""


# ``client_order_id`` cuts a long readable part to ``readable[:47 - len(leg)]``: for a longer leg the cut
# would reach back into the batch's part (a negative index), so ids of such a leg are made one by one
LONGEST_CUT_LEG = 47


def client_order_ids(batch_id: str, symbols: list[str], leg: str) -> list[str]:
    """``client_order_id`` for many symbols of one batch and leg (the per-batch parts made once:
    a backtest names a million orders this way); equal to calling it once per symbol. The digest
    of the batch's part of the text is taken once too, and copied for each symbol."""
    if len(leg) > LONGEST_CUT_LEG:
        return [client_order_id(batch_id, s, leg) for s in symbols]
    head = f"{OWNED_PREFIX}{batch_id.split('@')[0][:16]}-{batch_id.split('@')[-1]}-"
    post, tail = f"|{leg}", f"-{leg}"
    cut = len(OWNED_PREFIX) + 47 - len(leg)      # the readable part stays at most 48 characters
    longest = len(OWNED_PREFIX) + 48
    batch = hashlib.sha1(f"{batch_id}|".encode()).copy
    out: list[str] = []
    add = out.append
    for s in symbols:
        readable = head + s.replace("/", "") + tail
        if len(readable) > longest:
            readable = readable[:cut] + tail
        h = batch()
        h.update((s + post).encode())
        add(f"{readable}-{h.hexdigest()[:10]}")
    return out
