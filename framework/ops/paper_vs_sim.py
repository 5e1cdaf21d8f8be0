"""Paper (or live) versus simulation, order by order (SPEC §12).

Matching: the replay keeps the paper cycles' batch ids, so a simulated order carries the same
deterministic client order id (strategy, batch, symbol, leg) as the paper order for the same
intent: the first pass pairs orders by client order id; what is left is paired by
(batch time, symbol, side).

Per matched pair:

- implementation shortfall, in basis points of the simulated price:
  ``side × (paper average fill price − simulated average fill price) / simulated price × 1e4``
  (positive = paper paid more on a buy or received less on a sell than the simulator said);
  its cost in quote currency is ``side × (paper − simulated price) × paper filled quantity``;
- fees charged vs fees simulated;
- fill state: ``filled``; ``partial`` (paper filled part of the order); ``missed`` (the simulator
  filled, paper did not); ``sim_unfilled`` (the reverse); orders in one side only are listed apart;
- timing: paper seconds from the order's intent record to its first fill, simulated seconds
  from the batch time to the fill bar.

Equity tracking: at every cycle both sides record the equity they sized it with; the last point
is each side's equity after the last cycle. Returns between consecutive points are grouped by
UTC day of the batch time (a day's return runs from the previous day's last point, the first
day's from the first cycle). With ``d`` the daily return differences (paper − simulation):

- ``tracking_error`` = ``sqrt(mean(d²))``, not annualised: the root mean square keeps a steady
  bias (a venue that always fills worse than the simulator) inside the figure, where the sample
  standard deviation would remove it, and it is defined from the first day;
- ``tracking_error_std`` = ``std(d, ddof=1)`` (the textbook figure; null below two days);
- ``cycle_tracking_error``: the RMS of the per-cycle return differences.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from framework.ledger import Ledger
from framework.ops.replay import ReplayPlan, SimReplay
from framework.ops.track import track_frames

ORDER_ROW_FIELDS = ("client_order_id", "time", "symbol", "side", "leg", "match", "state", "paper_qty", "sim_qty",
                    "paper_filled", "sim_filled", "paper_price", "sim_price", "shortfall_bps",
                    "shortfall_cost", "paper_fee", "sim_fee", "paper_delay_s", "sim_delay_s", "paper_status",
                    "sim_status", "paper_fill_time", "sim_fill_time")
ORDER_TABLE = ("client_order_id", "time", "symbol", "side", "sign", "qty", "status", "filled", "price", "fee",
               "submitted", "first_fill", "ref_price", "leg")
EXIT_LEGS = ("stop", "take")   # protective exits (SPEC §20): rows of their own, with where they fired
DAILY = ("date", "paper_pnl", "sim_pnl", "pnl_diff", "paper_return", "sim_return", "return_diff")
EPS = 1e-9


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True, format="ISO8601")


def order_table(orders: pd.DataFrame, fills: pd.DataFrame,
                submitted: pd.Series | None = None) -> pd.DataFrame:
    """One row per order: ordered and filled quantity, fill VWAP, fees, intent and first-fill times."""
    if orders.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ORDER_TABLE})
    o = orders.copy()
    o["time"] = _utc(o["time"])
    o["sign"] = np.where(o["side"].str.lower() == "buy", 1, -1)
    if len(fills):
        f = fills.copy()
        f["time"] = _utc(f["time"])
        f["notional"] = f["qty"] * f["price"]
        g = f.groupby("client_order_id")
        agg = pd.DataFrame({"filled": g["qty"].sum(), "notional": g["notional"].sum(),
                            "fee": g["fee"].sum(), "first_fill": g["time"].min()})
        o = o.merge(agg, how="left", left_on="client_order_id", right_index=True)
    else:
        o["filled"], o["notional"], o["fee"], o["first_fill"] = np.nan, np.nan, np.nan, pd.NaT
    o["filled"] = o["filled"].fillna(0.0)
    o["fee"] = o["fee"].fillna(0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        o["price"] = np.where(o["filled"] > 0, o["notional"] / o["filled"].where(o["filled"] > 0), np.nan)
    o["price"] = o["price"].fillna(o["avg_price"].where(o["filled"] > 0))
    o["submitted"] = o["client_order_id"].map(submitted) if submitted is not None else pd.NaT
    if "ref_price" not in o:
        o["ref_price"] = np.nan
    o["leg"] = o["leg"].fillna("") if "leg" in o else ""
    return o[list(ORDER_TABLE)].reset_index(drop=True)


def _submitted(ledger: Ledger, run_ids: list[str]) -> pd.Series:
    ev = ledger.first_event_times(run_ids)
    if ev.empty:
        return pd.Series(dtype=object)
    return pd.Series(_utc(ev["t"]).to_numpy(), index=ev["client_order_id"])


def match(paper: pd.DataFrame,
          sim: pd.DataFrame) -> tuple[list[tuple[int, int, str]], list[int], list[int]]:
    """Pair orders by client order id, then by (batch time, symbol, side); return pairs and leftovers."""
    pairs: list[tuple[int, int, str]] = []
    by_id = {cid: j for j, cid in enumerate(sim["client_order_id"].tolist())}
    free_p, free_s = [], set(range(len(sim)))
    for i, cid in enumerate(paper["client_order_id"].tolist()):
        j = by_id.get(cid)
        if j is not None and j in free_s:
            pairs.append((i, j, "client_order_id"))
            free_s.discard(j)
        else:
            free_p.append(i)
    keys: dict[tuple, list[int]] = {}
    for j in sorted(free_s):
        keys.setdefault((sim.at[j, "time"], sim.at[j, "symbol"], sim.at[j, "side"]), []).append(j)
    left_p = []
    for i in free_p:
        cands = keys.get((paper.at[i, "time"], paper.at[i, "symbol"], paper.at[i, "side"]))
        if cands:
            j = cands.pop(0)
            pairs.append((i, j, "batch_symbol_side"))
            free_s.discard(j)
        else:
            left_p.append(i)
    return pairs, left_p, sorted(free_s)


def _state(p_filled: float, p_qty: float, s_filled: float) -> str:
    if p_filled <= EPS and s_filled <= EPS:
        return "neither_filled"
    if p_filled <= EPS:
        return "missed"
    if s_filled <= EPS:
        return "sim_unfilled"
    if p_filled < p_qty * (1 - 1e-6) - EPS:
        return "partial"
    return "filled"


def _seconds(a, b) -> float | None:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    return float((pd.Timestamp(a) - pd.Timestamp(b)).total_seconds())


def order_rows(paper: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """The per-order reconciliation table (matched pairs first, then one-sided orders)."""
    pairs, only_p, only_s = match(paper, sim)
    rows = []
    for i, j, how in pairs:
        p, s = paper.loc[i], sim.loc[j]
        sign = int(p["sign"])
        pp, sp = float(p["price"]), float(s["price"])
        ok = p["filled"] > EPS and s["filled"] > EPS and math.isfinite(pp) and math.isfinite(sp) and sp > 0
        rows.append({
            "client_order_id": p["client_order_id"], "time": p["time"], "symbol": p["symbol"],
            "side": p["side"], "match": how,
            "state": _state(float(p["filled"]), float(p["qty"]), float(s["filled"])),
            "paper_qty": float(p["qty"]), "sim_qty": float(s["qty"]), "paper_filled": float(p["filled"]),
            "sim_filled": float(s["filled"]), "paper_price": pp if p["filled"] > EPS else None,
            "sim_price": sp if s["filled"] > EPS else None,
            "shortfall_bps": sign * (pp - sp) / sp * 1e4 if ok else None,
            "shortfall_cost": sign * (pp - sp) * float(p["filled"]) if ok else None,
            "paper_fee": float(p["fee"]), "sim_fee": float(s["fee"]),
            "paper_delay_s": _seconds(p["first_fill"], p["submitted"]),
            "sim_delay_s": _seconds(s["first_fill"], s["time"]),
            "paper_status": p["status"], "sim_status": s["status"], "leg": p["leg"],
            "paper_fill_time": p["first_fill"], "sim_fill_time": s["first_fill"]})
    for side, idx, frame in (("paper", only_p, paper), ("sim", only_s, sim)):
        for i in idx:
            o = frame.loc[i]
            filled = float(o["filled"])
            rows.append(dict.fromkeys(ORDER_ROW_FIELDS) | {
                "client_order_id": o["client_order_id"], "time": o["time"], "symbol": o["symbol"],
                "side": o["side"], "match": f"only_{side}", "state": f"only_{side}",
                f"{side}_qty": float(o["qty"]),
                f"{side}_filled": filled, f"{side}_price": float(o["price"]) if filled > EPS else None,
                f"{side}_fee": float(o["fee"]), f"{side}_status": o["status"], "leg": o["leg"],
                f"{side}_fill_time": o["first_fill"]})
    table = pd.DataFrame(rows, columns=list(ORDER_ROW_FIELDS))
    return table.sort_values(["time", "symbol", "side"], kind="stable").reset_index(drop=True)


def shortfall_stats(rows: pd.DataFrame) -> dict:
    """Notional-weighted and plain statistics of the per-order shortfall (bps) and its cost."""
    s = rows.dropna(subset=["shortfall_bps"])
    if s.empty:
        return dict.fromkeys(("weighted_bps", "mean_bps", "median_bps", "min_bps", "max_bps", "rms_bps")) | {
            "n": 0, "cost": 0.0}
    bps = s["shortfall_bps"].astype(float)
    w = (s["paper_filled"].astype(float) * s["sim_price"].astype(float)).abs()
    return {"n": len(s), "weighted_bps": float((bps * w).sum() / w.sum()) if w.sum() > 0 else None,
            "mean_bps": float(bps.mean()), "median_bps": float(bps.median()), "min_bps": float(bps.min()),
            "max_bps": float(bps.max()), "rms_bps": float(np.sqrt((bps ** 2).mean())),
            "cost": float(s["shortfall_cost"].astype(float).sum())}


# ---------------------------------------------------------------- equity tracking
def equity_points(plan: ReplayPlan, sim: SimReplay) -> pd.DataFrame:
    """Both sides' equity at each cycle (sizing equity) and after the last cycle, keyed by batch time."""
    c = sim.cycles[sim.cycles["status"] != "mark"]
    sim_eq = dict(zip(c["batch_id"], c["equity"].astype(float)))
    rows = [{"time": pd.Timestamp(c.time, tz="UTC"), "batch_id": c.batch_id, "paper": c.equity,
             "sim": sim_eq.get(c.batch_id, np.nan)} for c in plan.cycles]
    last = pd.Timestamp(plan.cycles[-1].time, tz="UTC") + pd.Timedelta(microseconds=1)
    paper_final = plan.final_equity if plan.final_equity is not None else np.nan
    rows.append({"time": last, "batch_id": "after last cycle", "paper": paper_final, "sim": sim.final_equity})
    return pd.DataFrame(rows)


def _daily(points: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """Last value of each UTC day and the day's return from the previous day's last (the first point)."""
    s = points.set_index("time")[column].astype(float)
    last = s.groupby(s.index.normalize()).last()
    prev = last.shift(1)
    prev.iloc[0] = s.iloc[0]
    return last, last / prev - 1.0


def tracking(points: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Tracking error and daily P&L of paper vs simulation (definitions in the module docstring)."""
    pts = points.dropna(subset=["paper", "sim"])
    if len(pts) < 2:
        empty = dict.fromkeys(("tracking_error", "tracking_error_std", "cycle_tracking_error",
                               "mean_daily_difference")) | {"days": 0}
        return empty, pd.DataFrame(columns=list(DAILY))
    p_last, p_ret = _daily(pts, "paper")
    s_last, s_ret = _daily(pts, "sim")
    d = p_ret - s_ret
    first_p, first_s = float(pts["paper"].iloc[0]), float(pts["sim"].iloc[0])
    daily = pd.DataFrame({"date": [t.strftime("%Y-%m-%d") for t in p_last.index],
                          "paper_pnl": p_last.diff().fillna(p_last.iloc[0] - first_p).to_numpy(),
                          "sim_pnl": s_last.diff().fillna(s_last.iloc[0] - first_s).to_numpy(),
                          "paper_return": p_ret.to_numpy(), "sim_return": s_ret.to_numpy(),
                          "return_diff": d.to_numpy()})
    daily["pnl_diff"] = daily["paper_pnl"] - daily["sim_pnl"]
    rp = pts["paper"].astype(float).pct_change().iloc[1:]
    rs = pts["sim"].astype(float).pct_change().iloc[1:]
    dc = (rp - rs).to_numpy()
    out = {"tracking_error": float(np.sqrt(np.mean(d.to_numpy() ** 2))),
           "tracking_error_std": float(np.std(d.to_numpy(), ddof=1)) if len(d) >= 2 else None,
           "cycle_tracking_error": float(np.sqrt(np.mean(dc ** 2))) if len(dc) else None,
           "days": len(d), "mean_daily_difference": float(d.mean())}
    return out, daily[list(DAILY)]


# ---------------------------------------------------------------- the whole reconciliation
def reconcile(ledger: Ledger, plan: ReplayPlan, sim: SimReplay, *,
              replay_hash: str) -> tuple[dict, pd.DataFrame]:
    """Return the reconciliation (JSON-able dict) and the per-order table."""
    f = track_frames(ledger, plan.run_ids)
    batch_ids = {c.batch_id for c in plan.cycles}
    paper = order_table(f["orders"], f["fills"], _submitted(ledger, plan.run_ids))
    simt = order_table(sim.orders, sim.fills)
    rows = order_rows(paper, simt)
    matched = rows[~rows["match"].str.startswith("only_")]
    pts = equity_points(plan, sim)
    track, daily = tracking(pts)
    delays_p = matched["paper_delay_s"].dropna().astype(float)
    delays_s = matched["sim_delay_s"].dropna().astype(float)
    fees_p = float(matched["paper_fee"].astype(float).sum())
    fees_s = float(matched["sim_fee"].astype(float).sum())
    states = matched["state"].value_counts()
    final_p = plan.final_equity
    run = plan.target_run
    result = {
        "run_id": run["run_id"], "strategy": run["strategy"], "mode": run["mode"], "broker": run["broker"],
        "config_hash": run["config_hash"], "replay_config_hash": replay_hash,
        "runs": plan.run_ids, "n_cycles": len(plan.cycles), "batch_ids": sorted(batch_ids),
        "start": pd.Timestamp(plan.cycles[0].time, tz="UTC").isoformat(),
        "end": pd.Timestamp(plan.cycles[-1].time, tz="UTC").isoformat(),
        "simulation": {"bars": sim.bars_source, "fill": sim.fill, "slippage": sim.slippage.model_dump()},
        "orders": {
            "paper": len(paper), "simulated": len(simt), "matched": len(matched),
            "matched_by_client_order_id": int((matched["match"] == "client_order_id").sum()),
            "only_paper": int((rows["match"] == "only_paper").sum()),
            "only_simulated": int((rows["match"] == "only_sim").sum()),
            **{k: int(states.get(k, 0)) for k in ("filled", "partial", "missed", "sim_unfilled")},
        },
        "shortfall": shortfall_stats(matched),
        "fees": {"paper": fees_p, "simulated": fees_s, "difference": fees_p - fees_s},
        "timing": {"paper_median_delay_s": float(delays_p.median()) if len(delays_p) else None,
                   "paper_max_delay_s": float(delays_p.max()) if len(delays_p) else None,
                   "sim_median_delay_s": float(delays_s.median()) if len(delays_s) else None},
        "tracking": track | {"final_equity_paper": final_p, "final_equity_sim": sim.final_equity,
                             "final_difference": None if final_p is None else final_p - sim.final_equity},
        "equity": [{"time": r.time.isoformat(), "batch_id": r.batch_id, "paper": _num(r.paper),
                    "sim": _num(r.sim)} for r in pts.itertuples(index=False)],
        "daily": [{k: (_num(v) if k != "date" else v) for k, v in r.items()}
                  for r in daily.to_dict("records")],
        "order_rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows.to_dict("records")],
        "exits": [{k: _jsonable(r[k]) for k in ("leg", "symbol", "side", "state", "paper_fill_time", "paper_price",
                                                "sim_fill_time", "sim_price", "shortfall_bps", "client_order_id")}
                  for r in rows.to_dict("records") if r["leg"] in EXIT_LEGS
                  and (r["paper_filled"] or 0) + (r["sim_filled"] or 0) > EPS],
    }
    return result, rows


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _jsonable(v):
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if v is pd.NaT:
        return None
    return v
