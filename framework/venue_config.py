"""A venue file (``config/venues/VENUE.yaml``): the venue's fee schedule and order rules per asset
class, with per-instrument overrides, as typed models, and where it is found (``load_venue``).
The simulator and the cost models read it; the live adapters take the same rules from the venue."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from framework.config import Model, _validate, config_dirs, read_yaml
from framework.errors import ConfigError


class FeeTier(Model):
    min_volume: float = 0.0
    maker_bps: float = 0.0
    taker_bps: float = 0.0


class SellRegulatory(Model):
    sec_fee_per_dollar: float = 0.0
    finra_taf_per_share: float = 0.0
    finra_taf_max_per_trade: float = 0.0
    cat_fee_per_share: float = 0.0


class FeeSchedule(Model):
    tiers: list[FeeTier] = [FeeTier()]
    sell_regulatory: SellRegulatory = SellRegulatory()


class AssetClassRules(Model):
    fractional: bool = True
    qty_increment: float = 1e-9
    min_qty: float = 0.0
    min_notional: float = 0.0
    shorting: bool = False
    time_in_force: Literal["day", "gtc", "ioc"] = "day"
    hours: str = "24/7"
    fees: FeeSchedule = FeeSchedule()


class InstrumentRules(Model):
    qty_increment: float | None = None
    min_qty: float | None = None
    price_increment: float | None = None
    min_notional: float | None = None
    fractionable: bool | None = None
    shortable: bool | None = None


class VenueConfig(Model):
    venue: str
    asset_classes: dict[Literal["equity", "crypto"], AssetClassRules]
    instruments: dict[str, InstrumentRules] = {}
    crypto_assets: list[str] = []    # crypto bases the venue lists, to read bare pairs such as POLUSD
    source: str = "<embedded>"

    def rules(self, asset_class: str) -> AssetClassRules:
        r = self.asset_classes.get(asset_class)
        if r is None:
            raise ConfigError(f"{self.source}: venue {self.venue!r} does not trade {asset_class}")
        return r


def load_venue(name: str, settings_path: str | Path | None = None) -> VenueConfig:
    for d in config_dirs(settings_path):
        cand = d / "venues" / f"{name}.yaml"
        if cand.is_file():
            return _validate(VenueConfig, read_yaml(cand), cand)
    raise ConfigError(f"venue file venues/{name}.yaml not found")
