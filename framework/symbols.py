"""Canonical symbols: equities as tickers (``AAPL``), crypto pairs as ``BASE/QUOTE`` (``BTC/USD``).

Inputs ``X:BTCUSD`` (the earlier framework's form), ``BTC-USD``, ``BTC/USD`` and ``BTCUSD`` all
resolve to ``BTC/USD``. Venue forms (``BTC-USD`` for Coinbase, ``BTCUSD`` for Alpaca positions) are
produced inside each broker adapter, never here.

A pair written without a separator (``POLUSD``) is read as crypto when its base is a known crypto
asset: the built-in list below, plus the ``crypto_assets`` of the venue files the caller passes
(``framework.venue.crypto_bases``). With ``strict`` (signal files), a bare symbol that ends in a
dollar quote but whose base no list knows (``ABCUSD``) is an error naming the fixes, never
silently a stock ticker: a stock traded as if it were a coin (or the reverse) trades at the wrong
hours with the wrong fees.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Quote currencies recognised when a pair is written without a separator (BTCUSD, ETHUSDT).
QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH")
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


@lru_cache(maxsize=65536)
def canonical(raw: str, crypto_bases: frozenset[str] = frozenset(), strict: bool = False) -> str:
    """Return the canonical form of ``raw`` or raise ValueError saying why it is not a symbol.

    ``crypto_bases`` adds crypto assets (from venue files) to the built-in list; ``strict`` refuses
    a bare ``...USD``/``...USDT``/``...USDC`` whose base no list knows instead of reading a ticker.
    """
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
    if crypto_prefix or is_pair_without_separator(s, crypto_bases):
        for q in QUOTES:
            if s.endswith(q) and len(s) > len(q) and (crypto_prefix or s[: -len(q)] in CRYPTO_BASES | crypto_bases):
                return f"{s[: -len(q)]}/{q}"
        for q in QUOTES:
            if s.endswith(q) and len(s) > len(q):
                return f"{s[: -len(q)]}/{q}"
        raise ValueError(f"not a crypto pair: {raw!r}")
    if not _TICKER.match(s):
        raise ValueError(f"not a symbol: {raw!r}")
    if strict:
        for q in AMBIGUOUS_QUOTES:
            if s.endswith(q) and len(s) - len(q) >= 2:
                base = s[: -len(q)]
                raise ValueError(
                    f"cannot tell whether {s} is a stock ticker or the crypto pair {base}/{q}: no venue file "
                    f"lists {base} among its crypto_assets. Write it {base}/{q} (or X:{s}) if it is crypto, "
                    f"or add {base} to crypto_assets in config/venues/VENUE.yaml")
    return s


# Known crypto bases, so that BTCUSD is read as a pair while a ticker like USDU stays a ticker: the
# assets of config/venues/alpaca.yaml and coinbase.yaml (crypto_assets, with their sources), so that
# broker adapters reading "POLUSD" from a venue get the pair too.
CRYPTO_BASES = frozenset(
    ["BTC", "ETH", "SOL", "LTC", "BCH", "DOGE", "AVAX", "LINK", "UNI", "AAVE", "DOT", "XRP", "ADA", "MATIC", "SHIB", "USDT", "USDC", "XTZ", "GRT", "SUSHI", "YFI", "MKR", "CRV", "BAT", "PEPE", "TRUMP", "USDG", "POL", "ATOM", "XLM", "ALGO", "FIL", "ICP", "NEAR", "APT", "ARB", "OP", "SUI", "HBAR", "ETC", "COMP", "SNX", "DAI", "BONK"]
)
# Quotes that make a bare symbol ambiguous when its base is unknown (ABCUSD: ticker or ABC/USD?).
AMBIGUOUS_QUOTES = ("USDT", "USDC", "USD")


def is_pair_without_separator(s: str, extra: frozenset[str] = frozenset()) -> bool:
    """Tell whether ``s`` (upper case, no separator) is a known crypto base followed by a quote."""
    for q in QUOTES:
        if s.endswith(q) and (s[: -len(q)] in CRYPTO_BASES or s[: -len(q)] in extra):
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
