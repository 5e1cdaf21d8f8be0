"""Venue order rules as data: which symbols trade, in which increments, minimums and hours.

The simulator uses these rules so that a backtest "as Alpaca" or "as Coinbase" is refused what the
venue refuses; live adapters fill the same ``Universe`` from the venue's own asset endpoints.
"""

from __future__ import annotations

from pathlib import Path

from framework.config import config_dirs
from framework.symbols import split_pair
from framework.types import AssetClass, Instrument, Universe
from framework.venue_config import VenueConfig, load_venue


def instruments_for(venue: VenueConfig, symbols: list[str] | tuple[str, ...]) -> list[Instrument]:
    """Instrument rules for ``symbols`` from the venue file (asset-class rules + per-symbol overrides)."""
    out = []
    for s in symbols:
        ac = AssetClass.of(s)
        rules = venue.asset_classes.get(ac.value)
        if rules is None:
            out.append(Instrument(s, ac, tradable=False))
            continue
        o = venue.instruments.get(s)
        frac = rules.fractional if o is None or o.fractionable is None else o.fractionable

        def pick(name: str, default: float, o=o) -> float:
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
    """Symbols the venue does not trade, with the reason (for signal validation).

    A crypto pair whose base is not among the venue's ``crypto_assets`` (when the file lists them)
    is refused: a backtest "as Alpaca" must not fill a coin Alpaca does not list.
    """
    bad = {}
    listed = set(venue.crypto_assets)
    for s in symbols:
        ac = AssetClass.of(s)
        if venue.asset_classes.get(ac.value) is None:
            bad[s] = f"{venue.venue} does not trade {ac.value}"
        elif ac is AssetClass.CRYPTO and listed and split_pair(s)[0] not in listed:
            bad[s] = (f"{venue.venue} does not list the crypto asset {split_pair(s)[0]} "
                      f"(crypto_assets in {venue.source})")
    return bad


def crypto_bases(settings_path: str | Path | None = None) -> frozenset[str]:
    """The crypto assets of every venue file Parity can find, to read bare pairs such as POLUSD."""
    out: set[str] = set()
    for name in ("alpaca", "coinbase"):
        if any((d / "venues" / f"{name}.yaml").is_file() for d in config_dirs(settings_path)):
            out.update(a.strip().upper() for a in load_venue(name, settings_path).crypto_assets)
    return frozenset(out)
