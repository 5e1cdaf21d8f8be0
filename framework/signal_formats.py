"""Signal file formats other than Parity's own, converted row-for-row into Parity's columns.

``signals.format: alchemiser-alerts`` reads the earlier multi-strategy system's alert log as it is
written (SPEC §21): JSON Lines rows ``timestamp, symbol, action, price, reason`` such as
``{"timestamp": "2025-07-14T11:18:00.063759", "symbol": "SMR", "action": "BUY", "price": 37.48,
"reason": "Nuclear portfolio allocation: 31.2% (Bull market - Nuclear portfolio: SMR (31.2%), ...)"}``.

Decisions (the log itself says no more):

- The target weight is the first percentage in ``reason`` (``31.2%`` -> 0.312); confidence is 1
  (the log has none, and every row is a decision the system took).
- ``BUY`` and ``HOLD`` with a percentage target that weight; ``SELL`` targets 0 (the holding is
  sold). ``HOLD`` without a percentage keeps the position as it is: it becomes a row with
  confidence 0, which the risk manager leaves alone (below ``min_confidence``) and records why.
  This relies on ``min_confidence`` above 0 (the default is 0.50); with 0 such a row targets 0.
  ``BUY`` without a percentage is an error: the size it meant is unknown.
- A row whose symbol is a portfolio pseudo-symbol (it holds ``_``, e.g. ``NUCLEAR_PORTFOLIO``,
  which no exchange ticker does) is replaced by one row per holding its reason lists
  (``SMR (31.2%), LEU (39.5%), OKLO (29.3%)``), each at its own percentage, with the pseudo-row's
  action and line; a pseudo-row that lists no holding is an error.
- Several rows of one symbol in one batch (the pseudo-row's holdings repeat the single rows) follow
  ``duplicates`` (default ``last`` for this format: the log is a stream of decisions, the later
  one stands). Batching (rows within 5 minutes by default) is done by framework.signal_batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from framework.errors import Problem
from framework.signal_files import _as_text, _File

ALERT_COLUMNS = ("timestamp", "symbol", "action", "reason")
_PCT = r"(-?\d+(?:\.\d+)?)\s*%"
_HOLDING = r"([A-Z][A-Z0-9.]{0,9}(?:[/-][A-Z0-9]{2,5})?)\s*\(\s*(\d+(?:\.\d+)?)\s*%\s*\)"


def alchemiser_alerts(home: str):
    """Return the converter for one alert-log file; ``home`` is where ``signals.*`` settings live."""

    def convert(f: _File, problems: list[Problem]) -> None:
        assert f.frame is not None and f.lines is not None
        df, lines = f.frame.reset_index(drop=True), f.lines
        missing = [c for c in ALERT_COLUMNS if c not in df.columns]
        if missing:
            for c in missing:
                problems.append(Problem(f.path, None, c, f"missing column {c!r}: signals.format: alchemiser-alerts "
                                        f"(set in {home}) reads {', '.join(ALERT_COLUMNS)} and price"))
            return
        n = len(df)
        symbol = _as_text(df["symbol"]).fillna("").str.strip().str.upper()
        action = _as_text(df["action"]).fillna("").str.strip().str.upper()
        reason = _as_text(df["reason"]).fillna("")
        pct = pd.to_numeric(reason.str.extract(_PCT, expand=False), errors="coerce").to_numpy(float) / 100

        def bad(idx: np.ndarray, field: str, say) -> None:
            for i in idx[:100]:
                problems.append(Problem(f.path, int(lines[i]), field, say(int(i))))

        known = action.isin(["BUY", "SELL", "HOLD"]).to_numpy(bool)
        bad(np.flatnonzero(~known), "action",
            lambda i: f"action must be BUY, SELL or HOLD, got {df['action'].iloc[i]!r}")
        pseudo = symbol.str.contains("_", regex=False).to_numpy(bool)
        buy, sell, hold = (action.eq(a).to_numpy(bool) for a in ("BUY", "SELL", "HOLD"))
        no_pct = np.isnan(pct)
        bad(np.flatnonzero(buy & no_pct & ~pseudo), "reason",
            lambda i: f"BUY without a percentage in reason ({reason.iloc[i][:60]!r}): the weight it meant is unknown")

        side = np.where(sell, 0.0, 1.0)
        weight = np.where(sell, 0.0, np.where(no_pct, 0.0, pct))
        confidence = np.where(hold & no_pct, 0.0, 1.0)
        single = np.flatnonzero(~pseudo)
        out = pd.DataFrame({"symbol": symbol.iloc[single].to_numpy(), "time": df["timestamp"].iloc[single].to_numpy(),
                            "side": side[single], "weight": weight[single], "confidence": confidence[single],
                            "regime": action.iloc[single].to_numpy(), "reason": reason.iloc[single].to_numpy()})
        out_lines = lines[single]

        rows = np.flatnonzero(pseudo)
        if len(rows):
            held = reason.iloc[rows].str.extractall(_HOLDING)
            at = held.index.get_level_values(0).to_numpy().astype(np.int64)   # the row each holding is listed in
            listed = np.isin(rows, at)
            bad(rows[~listed], "reason",
                lambda i: f"portfolio row {symbol.iloc[i]} lists no holdings as 'SYMBOL (12.3%)' in its reason")
            w = pd.to_numeric(held[1], errors="coerce").to_numpy(float) / 100
            expanded = pd.DataFrame({"symbol": held[0].to_numpy(), "time": df["timestamp"].to_numpy()[at],
                                     "side": side[at], "weight": np.where(sell[at], 0.0, w), "confidence": 1.0,
                                     "regime": action.to_numpy()[at], "reason": reason.to_numpy()[at]})
            out = pd.concat([out, expanded], ignore_index=True)
            out_lines = np.concatenate([out_lines, lines[at]])
        order = np.argsort(out_lines, kind="stable")
        f.frame = out.iloc[order].reset_index(drop=True)
        f.lines = out_lines[order].astype(np.int64)
        if n and len(f.frame) == 0:
            problems.append(Problem(f.path, None, None, "no rows after reading the alert log"))

    return convert
