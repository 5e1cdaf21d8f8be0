"""Validated configuration: settings.yaml, strategies/NAME.yaml and venues/VENUE.yaml.

Models are frozen and reject unknown keys; a wrong key or type becomes a ConfigError naming the
file and the key. ``${VAR}`` is read from the environment or a ``.env`` file in the working
directory. A secret written literally in YAML works but triggers a warning. Relative paths in the
files (ledger, data_dir, reports_dir, signal and bar sources) are relative to the working directory.

Coming from the earlier framework (SPEC §21): settings.yaml may hold that framework's other
top-level sections (its analysis pipeline's ``symbols``, ``telegram``, ``risk``, ...); they are
ignored with one note naming them, except a name one letter or two from a Parity key (``ledgr``),
which is an error. Inside ``execution:`` unknown keys stay errors. A limit written as a
percentage (``max_position_size_pct: 20``) is refused with the fraction meant (0.20).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from framework.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BARE_ENV = re.compile(r"(?<![\"'\w])\$\{[A-Za-z_][A-Za-z0-9_]*\}(?![\"'\w])")
SECRET_KEYS = ("api_key", "api_secret", "paper_api_key", "paper_api_secret")
PACKAGE_CONFIG = Path(__file__).resolve().parent.parent / "config"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def note(message: str) -> None:
    """Tell the user something they should know but need not act on (stderr, never stdout)."""
    import sys

    print(f"note: {message}", file=sys.stderr)


# ---------------------------------------------------------------- settings.yaml
class AlpacaSettings(Model):
    enabled: bool = True
    api_key: str | None = None
    api_secret: str | None = None
    paper_api_key: str | None = None
    paper_api_secret: str | None = None
    base_url: str | None = None      # trading endpoint override, e.g. a local test server
    data_url: str | None = None      # market-data endpoint override
    stream_url: str | None = None    # trade_updates WebSocket override (streaming is on with the venue's
                                     # own endpoints, or wherever stream_url points)
    streaming: bool = True           # follow orders on the stream (REST polling stays the fallback)
    timeout_s: float = 10.0
    requests_per_minute: int = 200

    def keys(self, live: bool) -> tuple[str | None, str | None, str | None]:
        """Return (key, secret, note) for live or paper.

        Paper uses ``paper_api_key``/``paper_api_secret``; when neither is set, the earlier
        framework's habit of keeping paper keys under ``api_key``/``api_secret`` is followed, with
        a note saying so (a paper endpoint refuses live keys, so nothing can trade live by this).
        """
        if live:
            return self.api_key, self.api_secret, None
        if not self.paper_api_key and not self.paper_api_secret and self.api_key and self.api_secret:
            return self.api_key, self.api_secret, (
                "no paper keys (execution.alpaca.paper_api_key/paper_api_secret, ALPACA_PAPER_KEY/"
                "ALPACA_PAPER_SECRET): using api_key/api_secret for the paper account")
        return self.paper_api_key, self.paper_api_secret, None


class CoinbaseSettings(Model):
    enabled: bool = False
    api_key: str | None = None
    api_secret: str | None = None
    key_file: str | None = None      # CDP key JSON {"name": ..., "privateKey": ...}
    base_url: str | None = None      # host[:port] override, e.g. a local test server
    ca_bundle: str | None = None     # trust a test server's self-signed certificate
    stream_url: str | None = None    # user-channel WebSocket override (as for Alpaca)
    streaming: bool = True
    timeout_s: float = 10.0
    requests_per_second: int = 30


class RiskLimits(Model):
    """The risk limits of SPEC section 7; fractions of equity unless said otherwise."""

    max_position_size_pct: float = Field(0.20, ge=0)
    max_exposure_pct: float = Field(0.95, ge=0)
    max_positions: int = Field(10, ge=0)
    min_confidence: float = Field(0.50, ge=0)      # above 1 refused as a percentage below
    max_daily_loss_pct: float = Field(0.05, ge=0)
    min_account_balance: float = Field(1000.0, ge=0)
    max_leverage: float = Field(1.0, ge=0)
    max_signal_age_minutes: float = Field(15.0, gt=0)

    @field_validator("max_position_size_pct", "max_daily_loss_pct", "min_confidence")
    @classmethod
    def _fraction_not_percent(cls, v: float) -> float:
        if v > 1:
            raise ValueError(percent_message(v))
        return v

    @model_validator(mode="after")
    def _exposure_not_percent(self) -> RiskLimits:
        # Exposure may exceed 1 with leverage, and a value above max_leverage merely never binds (tests
        # write 5 to switch the rule off); 10 or more above the leverage can only be a percentage.
        v = self.max_exposure_pct
        if v > max(1.0, self.max_leverage) and v >= 10:
            raise ValueError(f"max_exposure_pct: {percent_message(v)} (it may exceed 1 only up to max_leverage "
                             f"{self.max_leverage:g})")
        return self


def percent_message(v: float) -> str:
    """Say that a limit above 1 reads as a percentage, and the fraction that was probably meant."""
    frac = f"{v / 100:.2f}"
    if abs(float(frac) - v / 100) > 1e-12:
        frac = f"{v / 100:.6g}"
    return (f"{v:g} looks like a percentage: limits are fractions of equity, so {v:g}% is written {frac} "
            f"(write {frac})")


class ExecutionSettings(RiskLimits):
    alpaca: AlpacaSettings = AlpacaSettings()
    coinbase: CoinbaseSettings = CoinbaseSettings()

    def limits(self) -> RiskLimits:
        return RiskLimits(**{k: getattr(self, k) for k in RiskLimits.model_fields})


class Settings(Model):
    execution: ExecutionSettings = ExecutionSettings()
    ledger: str = "data/parity.db"
    data_dir: str = "data/"
    reports_dir: str = "reports/"
    source: str = "<defaults>"


# ---------------------------------------------------------------- strategies/NAME.yaml
class SignalSource(Model):
    """Where a strategy's signals come from and how to read them (SPEC §4, §21)."""

    path: str | None = None
    timezone: str | None = None          # zone of times written without one
    duplicates: Literal["last", "max_confidence", "mean"] | None = None
    absent: Literal["close", "hold"] = "close"
    format: Literal["parity", "alchemiser-alerts"] = "parity"
    columns: dict[str, str] = {}         # Parity column name -> the file's column name
    batch_window: str | None = None      # e.g. 5m: rows within it of a batch's first row are one batch
    gross_tolerance: float = Field(0.005, ge=0, le=0.1)
    strategies: Literal["label", "sleeves"] | None = None

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        known = ("symbol", "time", "regime", "side", "weight", "confidence", "strategy")
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}: the keys are Parity's names ({', '.join(known)}), "
                             "the values the file's")
        return {k: str(c).strip().lower() for k, c in v.items()}

    @field_validator("batch_window")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v, "batch_window")
        return v

    def window_ns(self) -> int | None:
        """The batch window in nanoseconds: the setting, else 5 minutes for the alert-log format."""
        if self.batch_window is not None:
            return parse_duration(self.batch_window, "batch_window")
        return 5 * 60 * 10**9 if self.format == "alchemiser-alerts" else None


_SIGNAL_KEYS_SINCE_21 = ("format", "columns", "batch_window", "gross_tolerance", "strategies")


def parse_duration(text: str | float, what: str) -> int:
    """Return a duration such as ``5m``, ``90s``, ``1h`` or ``1d`` in nanoseconds (ValueError if not one)."""
    import pandas as pd

    try:
        td = pd.Timedelta(str(text).strip())
    except (ValueError, TypeError):
        raise ValueError(f"{what}: not a duration: {text!r} (write e.g. 5m, 90s, 1h)") from None
    if td.value < 0:
        raise ValueError(f"{what}: must not be negative")
    return int(td.value)


class BarSource(Model):
    path: str | None = None          # a long CSV file, or omitted for the local store
    timeframe: str | None = None     # store dataset, e.g. 1d, 1h, 1m
    factors: str | None = None       # split factor table (raw bars)


class SlippageSettings(Model):
    model: Literal["fixed_bps", "spread_impact"] = "fixed_bps"
    bps: float = Field(5.0, ge=0)
    spread_bps: float = Field(2.0, ge=0)    # spread_impact: full quoted spread; half is paid
    k: float = Field(0.1, ge=0)             # spread_impact: impact coefficient on sigma*sqrt(qty/ADV)
    lookback: int = Field(20, ge=2)


class SimulationSettings(Model):
    venue: Literal["alpaca", "coinbase"] = "alpaca"
    fill: Literal["next_open", "close", "vwap"] = "next_open"
    slippage: SlippageSettings = SlippageSettings()
    volume_cap: float | None = Field(None, gt=0, le=1)
    cash: float = Field(100_000.0, gt=0)
    fee_tier: int = Field(0, ge=0)
    fees: bool = True


class RebalanceSettings(Model):
    drift_threshold: float = Field(0.01, ge=0)
    cash_buffer_pct: float = Field(0.0, ge=0, lt=1)
    execution: Literal["market", "smart"] = "market"
    unfilled: Literal["carry", "cancel"] = "cancel"
    order_timeout_s: float = Field(60.0, gt=0)
    price_buffer_bps: float = Field(10.0, ge=0)   # headroom when re-sizing buys to buying power
    smart_reprices: int = Field(3, ge=0)           # smart: re-priced limit steps before the market step
    smart_offset_bps: float = Field(10.0, ge=0)    # smart: how far through the price each limit is set


class PaperGate(Model):
    min_sharpe: float | None = None
    min_deflated_sharpe: float | None = None  # SPEC §19: every sweep point of the strategy is a trial
    max_drawdown: float | None = None     # as a positive fraction, e.g. 0.25
    min_trades: int | None = None


class LiveGate(PaperGate):
    min_paper_days: int | None = None
    max_tracking_error: float | None = None
    no_risk_halt: bool = True


class PromotionGates(Model):
    paper: PaperGate = PaperGate()
    live: LiveGate = LiveGate()


class GeneratorSettings(Model):
    """A signal generator in ``strategies/`` (bars -> archive) and its parameters (SPEC §19)."""

    name: str                                        # e.g. momentum, or module:function
    params: dict[str, float | int | str | bool] = {}


def check_risk_overrides(v: dict[str, float]) -> dict[str, float]:
    """A ``risk:`` block overriding settings.yaml's limits (a strategy's or a portfolio's): known
    names only, and fractions written as fractions (35 is refused, with the 0.35 it likely meant)."""
    unknown = set(v) - set(RiskLimits.model_fields)
    if unknown:
        raise ValueError(f"unknown risk limit(s) {sorted(unknown)}; known: {sorted(RiskLimits.model_fields)}")
    for k in ("max_position_size_pct", "max_daily_loss_pct", "min_confidence"):
        if k in v and v[k] > 1:
            raise ValueError(f"{k}: {percent_message(v[k])}")
    return v


class StrategyConfig(Model):
    name: str
    description: str = ""
    stage: Literal["research", "paper", "live"] = "research"
    signals: SignalSource = SignalSource()
    bars: BarSource = BarSource()
    universe: list[str] | None = None
    routing: dict[str, Literal["alpaca", "coinbase", "sim"]] = {"equity": "alpaca", "crypto": "alpaca"}
    risk: dict[str, float] = {}
    rebalance: RebalanceSettings = RebalanceSettings()
    simulation: SimulationSettings = SimulationSettings()
    promotion: PromotionGates = PromotionGates()
    generator: GeneratorSettings | None = None       # when set, the archive is generated from the bars
    source: str = "<embedded>"

    @field_validator("risk")
    @classmethod
    def _known_risk_keys(cls, v: dict[str, float]) -> dict[str, float]:
        return check_risk_overrides(v)

    def limits(self, base: RiskLimits) -> RiskLimits:
        return RiskLimits(**{**base.model_dump(), **self.risk})

    def config_hash(self) -> str:
        """Content hash of everything that changes trading behaviour: not the stage, the file name, the
        description or the promotion gates (tightening a gate must not discard the evidence)."""
        skip = {"stage", "source", "description", "promotion"} | ({"generator"} if self.generator is None else set())
        data = self.model_dump(exclude=skip)
        # signals settings added for SPEC §21 count only when set, so that the hash of a strategy
        # promoted before they existed does not change
        for key, field in SignalSource.model_fields.items():
            if key in _SIGNAL_KEYS_SINCE_21 and data["signals"].get(key) == field.default:
                del data["signals"][key]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def broker_for(self, symbol: str) -> str:
        from framework.types import AssetClass

        return self.routing.get(symbol) or self.routing.get(AssetClass.of(symbol).value, "alpaca")


# ---------------------------------------------------------------- loading
def load_dotenv_once(directory: Path | None = None) -> None:
    from dotenv import load_dotenv

    path = (directory or Path.cwd()) / ".env"
    if path.is_file():
        load_dotenv(path, override=False)


def _interpolate(node: Any, file: str, path: str = "") -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            key_path = f"{path}.{k}" if path else str(k)
            if isinstance(v, str) and k in SECRET_KEYS and v and not _ENV.search(v):
                warnings.warn(f"{file}: {key_path} holds a literal secret; prefer ${{VAR}} from the environment",
                              stacklevel=2)
            out[k] = _interpolate(v, file, key_path)
        return out
    if isinstance(node, list):
        return [_interpolate(v, file, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and _ENV.search(node):
        value = _ENV.sub(lambda m: os.environ.get(m.group(1), ""), node)
        return value or None
    return node


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    # ${VAR} unquoted inside a flow mapping ({api_key: ${KEY}}) is not valid YAML, but it is how the
    # earlier framework's settings were written: quote such tokens before parsing.
    text = _BARE_ENV.sub(lambda m: f'"{m.group(0)}"', text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _validate(model: type[Model], data: dict, path: Path) -> Any:
    try:
        return model.model_validate({**data, "source": str(path)})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or "(top level)"
            lines.append(f"{path} [{key}]: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def load_settings(path: str | Path | None) -> Settings:
    """Load settings.yaml; without a file (the demo on a bare checkout) use the defaults.

    Top-level sections Parity does not read are dropped with one note naming them (the earlier
    framework's file holds its analysis pipeline's settings beside ``execution:``).
    """
    load_dotenv_once()
    if path is None:
        candidate = Path("config/settings.yaml")
        if not candidate.is_file():
            return Settings()
        path = candidate
    p = Path(path)
    data = _known_sections(read_yaml(p), p)
    return _validate(Settings, _interpolate(data, str(p)), p)


def _known_sections(data: dict, path: Path) -> dict:
    """Keep the top-level keys Parity reads; note the others, refuse near-misses of Parity's keys."""
    import difflib

    known = [k for k in Settings.model_fields if k != "source"]
    other = [str(k) for k in data if k not in known]
    typos = {k: m[0] for k in other if (m := difflib.get_close_matches(k, known, n=1, cutoff=0.8))}
    if typos:
        lines = [f"{path} [{k}]: unknown key; did you mean {m!r}?" for k, m in typos.items()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    if other:
        note(f"{path}: ignoring top-level section(s) Parity does not use: {', '.join(other)} "
             f"(Parity reads {', '.join(known)})")
    return {k: v for k, v in data.items() if k in known}


def config_dirs(settings_path: str | Path | None) -> list[Path]:
    """Where strategy and venue files are looked up: beside settings.yaml, then the repo's config/."""
    dirs = []
    if settings_path:
        dirs.append(Path(settings_path).resolve().parent)
    dirs += [Path("config").resolve(), PACKAGE_CONFIG]
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def find_config(kind: str, name_or_path: str, settings_path: str | Path | None = None) -> Path | None:
    """The file of a named config of ``kind`` (``strategies``, ``portfolios``): ``KIND/NAME.yaml`` beside
    settings.yaml, then under ``config/``; a YAML path as it is; None when there is no such file."""
    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml"):
        return p
    for d in config_dirs(settings_path):
        cand = d / kind / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    return None


def load_all(kind: str, load, settings_path: str | Path | None = None) -> tuple[list, list[str]]:
    """Every config of ``kind`` (``strategies``, ``portfolios``) in the config directories, loaded with
    ``load(path, settings_path)`` (the first of a name wins), and the problems of files that do not load."""
    seen: dict[str, Any] = {}
    problems: list[str] = []
    for d in config_dirs(settings_path):
        for f in sorted((d / kind).glob("*.yaml")):
            try:
                c = load(str(f), settings_path)
            except ConfigError as e:
                problems.append(str(e))
                continue
            seen.setdefault(c.name, c)
    return [seen[k] for k in sorted(seen)], problems


def not_found(kind: str, name: str, settings_path: str | Path | None) -> ConfigError:
    what = {"strategies": "strategy", "portfolios": "portfolio"}.get(kind, kind)
    return ConfigError(f"{what} {name!r} not found (looked for {kind}/{name}.yaml "
                       f"in {', '.join(str(d) for d in config_dirs(settings_path))})")


def load_strategy(name_or_path: str, settings_path: str | Path | None = None) -> StrategyConfig:
    """Load a strategy by name (config/strategies/NAME.yaml) or by path to a YAML file."""
    p = find_config("strategies", name_or_path, settings_path)
    if p is None:
        if name_or_path == "default":
            return StrategyConfig(name="default")
        raise not_found("strategies", name_or_path, settings_path)
    data = read_yaml(p)
    data.setdefault("name", p.stem)
    return _validate(StrategyConfig, data, p)


def mask_secret(value: str | None) -> str:
    """Show a key the way status output does: first two and last two characters."""
    if not value:
        return "(not set)"
    if len(value) <= 6:
        return "…"
    return f"{value[:2]}…{value[-2:]}"
