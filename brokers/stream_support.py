"""What both venue stream clients (``brokers/alpaca/stream.py``, ``brokers/coinbase/stream.py``) share:
the venue timestamp parser and the guard that keeps a consumer's exception out of the SDK's loop."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> datetime:
    """A venue timestamp (ISO 8601, ``Z`` or offset, up to nanoseconds) -> aware UTC datetime.

    Coinbase stamps nanoseconds (``2023-02-09T20:33:57.609931463Z``), which ``fromisoformat`` does not
    take: the fraction is cut to microseconds. A missing or unreadable value is "now": the update
    is still delivered, never dropped for its timestamp.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _FRACTION.sub(r"\1", str(value or "").strip()).replace("Z", "+00:00")
    try:
        out = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)
    return out if out.tzinfo else out.replace(tzinfo=UTC)


def deliver(log: logging.Logger, what: str, fn: Callable[..., Any] | None, *args: Any) -> bool:
    """Call a consumer's callback; an exception is logged, never raised into the SDK's event loop
    (alpaca-py and coinbase-advanced-py treat one as a broken connection). True when it returned."""
    if fn is None:
        return True
    try:
        fn(*args)
        return True
    except Exception:
        log.exception("%s callback failed", what)
        return False
