"""Canonical symbols: equities as tickers (``AAPL``), crypto pairs as ``BASE/QUOTE`` (``BTC/USD``).

Inputs ``X:BTCUSD`` (the earlier framework's form), ``BTC-USD``, ``BTC/USD`` and ``BTCUSD`` all
resolve to ``BTC/USD``. Venue forms (``BTC-USD`` for Coinbase, ``BTCUSD`` for Alpaca positions) are
produced inside each broker adapter, never here.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Quote currencies recognised when a pair is written without a separator (BTCUSD, ETHUSDT).
QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH")
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


@lru_cache(maxsize=65536)
def canonical(raw: str) -> str:
    """Return the canonical form of ``raw`` or raise ValueError saying why it is not a symbol."""
    s = str(raw).strip().upper()
    if not s:
        raise ValueError("empty symbol")
    crypto_prefix = False
    if s.startswith("X:"):
        s, crypto_prefix = s[2:], True
    for sep in ("/", "-"):
        if sep in s:
            base, _, quote = s.partition(sep)
            if not base or not quote or not base.isalnum() or not quote.isalnum():
                raise ValueError(f"not a symbol: {raw!r}")
            return f"{base}/{quote}"
    if crypto_prefix or is_pair_without_separator(s):
        for q in QUOTES:
            if s.endswith(q) and len(s) > len(q):
                return f"{s[: -len(q)]}/{q}"
        raise ValueError(f"not a crypto pair: {raw!r}")
    if not _TICKER.match(s):
        raise ValueError(f"not a symbol: {raw!r}")
    return s


# Known crypto bases, so that BTCUSD is read as a pair while a ticker like USDU stays a ticker.
CRYPTO_BASES = frozenset(
    "BTC ETH SOL LTC BCH DOGE AVAX LINK UNI AAVE DOT XRP ADA MATIC SHIB USDT USDC XTZ GRT SUSHI YFI MKR "
    "CRV BAT PEPE TRUMP".split()
)


def is_pair_without_separator(s: str) -> bool:
    """Tell whether ``s`` (upper case, no separator) is a known crypto base followed by a quote."""
    for q in QUOTES:
        if s.endswith(q) and s[: -len(q)] in CRYPTO_BASES:
            return True
    return False


def is_crypto(symbol: str) -> bool:
    """Tell whether a canonical symbol is a crypto pair."""
    return "/" in symbol


def split_pair(symbol: str) -> tuple[str, str]:
    """Return (base, quote) of a canonical crypto pair."""
    base, _, quote = symbol.partition("/")
    if not quote:
        raise ValueError(f"{symbol!r} is not a crypto pair")
    return base, quote
