"""Portfolios (SPEC §18): several strategies as sleeves of one account, ``portfolios/NAME.yaml``.

A portfolio names the account (broker and environment), its sleeves (strategy -> allocation, a
fraction of the account's equity or a fixed amount, optionally with the sleeve's own signal
archive), account-wide risk limits (settings.yaml's ``execution:`` limits unless overridden here),
and what a ``backtest --portfolio`` simulates. Validated like every other config model: unknown
keys and wrong types are errors naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from framework.config import (
    BarSource,
    Model,
    RebalanceSettings,
    RiskLimits,
    Settings,
    SimulationSettings,
    StrategyConfig,
    _validate,
    check_risk_overrides,
    find_config,
    load_strategy,
    not_found,
    read_yaml,
)
from framework.errors import ConfigError


class PortfolioAccount(Model):
    broker: Literal["alpaca", "coinbase"] = "alpaca"
    environment: Literal["paper", "live"] = "paper"


class SleeveAllocation(Model):
    """One sleeve: exactly one of ``fraction`` (of account equity) or ``amount`` (quote currency)."""

    fraction: float | None = Field(None, gt=0, le=1)
    amount: float | None = Field(None, gt=0)
    signals: str | None = None        # the sleeve's archive (default: the portfolio's, else the strategy's)

    @model_validator(mode="after")
    def _one_of(self) -> SleeveAllocation:
        if (self.fraction is None) == (self.amount is None):
            raise ValueError("give exactly one of fraction (of account equity, e.g. 0.3) or amount (e.g. 25000)")
        return self


class PortfolioConfig(Model):
    name: str
    description: str = ""
    account: PortfolioAccount = PortfolioAccount()
    signals: str | None = None         # one archive whose ``strategy`` column names the sleeves
    sleeves: dict[str, float | SleeveAllocation] = Field(default_factory=dict)
    risk: dict[str, float] = Field(default_factory=dict)   # account-wide overrides of settings.yaml's execution limits
    rebalance: RebalanceSettings = RebalanceSettings()   # how the netted orders are executed
    simulation: SimulationSettings = SimulationSettings()
    bars: BarSource = BarSource()
    source: str = "<embedded>"

    @field_validator("sleeves")
    @classmethod
    def _fractions(cls, v: dict) -> dict:
        out = {}
        for name, a in v.items():
            if isinstance(a, (int, float)):
                if not 0 < a <= 1:
                    raise ValueError(f"sleeve {name}: {a} is not a fraction of account equity in (0, 1]; "
                                     f"write {{amount: {a:g}}} for a fixed amount")
                a = SleeveAllocation(fraction=float(a))
            out[name] = a
        total = sum(a.fraction or 0.0 for a in out.values())
        if total > 1 + 1e-9:
            raise ValueError(f"the sleeves' fractions sum to {total:.4g}, above 1 (100% of the account's equity): "
                             "lower them so they sum to at most 1")
        return out

    @field_validator("risk")
    @classmethod
    def _known_risk_keys(cls, v: dict[str, float]) -> dict[str, float]:
        return check_risk_overrides(v)

    def limits(self, base: RiskLimits) -> RiskLimits:
        """The account-wide limits: settings.yaml's, with this portfolio's overrides."""
        return RiskLimits(**{**base.model_dump(), **self.risk})

    def allocations(self) -> dict[str, SleeveAllocation]:
        return dict(self.sleeves)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Sleeve:
    """One strategy of a portfolio, resolved: its config, its limits, its allocation, its archive."""

    name: str
    strategy: StrategyConfig
    limits: RiskLimits
    fraction: float | None
    amount: float | None
    signals: str | None

    def funding(self, account_equity: float) -> float:
        """The cash the sleeve starts with: its fraction of the account's equity, or its fixed amount."""
        return self.fraction * account_equity if self.fraction is not None else float(self.amount or 0.0)


def load_portfolio(name_or_path: str, settings_path: str | Path | None = None) -> PortfolioConfig:
    """Load ``portfolios/NAME.yaml`` (beside settings.yaml, then ``config/``) or a YAML path."""
    p = find_config("portfolios", name_or_path, settings_path)
    if p is None:
        raise not_found("portfolios", name_or_path, settings_path)
    data = read_yaml(p)
    data.setdefault("name", p.stem)
    return _validate(PortfolioConfig, data, p)


def archive_strategies(path: str) -> list[str]:
    """The strategies an archive's ``strategy`` column names, in order of appearance."""
    from framework.signals import read_archive

    df = read_archive(path)
    if "strategy" not in df.columns:
        return []
    tags = df["strategy"].astype("string").fillna("").str.strip()
    return [t for t in dict.fromkeys(tags.tolist()) if t]


def portfolio_of_strategy(strategy: StrategyConfig, settings_path: str | Path | None,
                          signals: str | None = None) -> PortfolioConfig:
    """The portfolio a strategy with ``signals.strategies: sleeves`` runs as: ``portfolios/NAME.yaml``
    when there is one (its allocations and settings win), else the strategy's own settings, with every
    strategy of its archive the portfolio does not name as a sleeve of equal allocation."""
    src = signals or strategy.signals.path
    try:
        base = load_portfolio(strategy.name, settings_path)
    except ConfigError as e:
        if "not found" not in str(e):
            raise
        base = PortfolioConfig(name=strategy.name, risk=strategy.risk, rebalance=strategy.rebalance,
                               simulation=strategy.simulation, bars=strategy.bars, source=strategy.source)
    inherit = {k: getattr(strategy, k) for k in ("risk", "rebalance", "simulation", "bars")
               if k not in base.model_fields_set}
    return base.model_copy(update={"signals": src or base.signals, **inherit})


def resolve_sleeves(portfolio: PortfolioConfig, settings: Settings, settings_path: str | Path | None,
                    names: list[str] | None = None) -> list[Sleeve]:
    """The sleeves with their strategy configs and limits. The strategies of the portfolio's shared
    archive (or ``names``) that it does not name get equal allocations of what it leaves unallocated.
    A strategy without ``strategies/NAME.yaml`` trades with settings.yaml's limits."""
    alloc = portfolio.allocations()
    if names is None and portfolio.signals:
        names = archive_strategies(portfolio.signals)
    extra = [n for n in (names or []) if n not in alloc]
    if extra:
        left = max(1.0 - sum(a.fraction or 0.0 for a in alloc.values()), 0.0)
        if left <= 0:
            raise ConfigError(f"{portfolio.source}: the archive names {extra}, but the sleeves already take 100% of "
                              "the account: give them an allocation under sleeves:")
        for n in extra:
            alloc[n] = SleeveAllocation(fraction=left / len(extra))
    if not alloc:
        raise ConfigError(f"{portfolio.source} [sleeves]: no sleeves: name at least one strategy with its allocation")
    base = settings.execution.limits()
    out = []
    for name, a in alloc.items():
        try:
            strat = load_strategy(name, settings_path)
        except ConfigError as e:
            if "not found" not in str(e):
                raise
            strat = StrategyConfig(name=name)
        out.append(Sleeve(name, strat, strat.limits(base), a.fraction, a.amount,
                          a.signals or portfolio.signals or strat.signals.path))
    if portfolio.signals and not names and not any(a.signals for a in alloc.values()) and len(out) > 1:
        raise ConfigError(f"{portfolio.source} [signals]: {portfolio.signals} has no strategy column, so its rows "
                          "cannot be told apart between sleeves: give each sleeve its own signals:")
    return out
