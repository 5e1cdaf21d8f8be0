"""Venue order rules as data: which symbols trade, in which increments, minimums and hours.

The simulator uses these rules so that a backtest "as Alpaca" or "as Coinbase" is refused what the
venue refuses; live adapters fill the same ``Universe`` from the venue's own asset endpoints.
"""

from __future__ import annotations

from framework.config import VenueConfig
from framework.types import AssetClass, Instrument, Universe


def instruments_for(venue: VenueConfig, symbols: list[str] | tuple[str, ...]) -> list[Instrument]:
    """Instrument rules for ``symbols`` from the venue file (asset-class rules + per-symbol overrides)."""
    out = []
    for s in symbols:
        ac = AssetClass.of(s)
        rules = venue.asset_classes.get(ac.value)  # type: ignore[call-overload]
        if rules is None:
            out.append(Instrument(s, ac, tradable=False))
            continue
        o = venue.instruments.get(s)
        frac = rules.fractional if o is None or o.fractionable is None else o.fractionable

        def pick(name: str, default: float) -> float:
            v = getattr(o, name, None) if o is not None else None
            return default if v is None else float(v)

        out.append(Instrument(
            symbol=s, asset_class=ac,
            qty_increment=pick("qty_increment", rules.qty_increment) if frac else 1.0,
            min_qty=pick("min_qty", rules.min_qty),
            min_notional=pick("min_notional", rules.min_notional),
            price_increment=pick("price_increment", 0.01),
            fractionable=frac,
            shortable=rules.shorting if o is None or o.shortable is None else o.shortable,
            tradable=True,
        ))
    return out


def universe_for(venue: VenueConfig, symbols: list[str] | tuple[str, ...]) -> Universe:
    return Universe.from_instruments(instruments_for(venue, symbols))


def untradable(venue: VenueConfig, symbols: list[str]) -> dict[str, str]:
    """Symbols the venue does not trade, with the reason (for signal validation)."""
    bad = {}
    for s in symbols:
        ac = AssetClass.of(s)
        if venue.asset_classes.get(ac.value) is None:  # type: ignore[call-overload]
            bad[s] = f"{venue.venue} does not trade {ac.value}"
    return bad
