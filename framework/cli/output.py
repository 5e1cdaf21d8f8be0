"""Human-readable output: summaries and tables printed by the CLI."""

from __future__ import annotations

import json
import sys

LINE = "=" * 62


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}%"


def _num(v, fmt: str = ",.2f") -> str:
    return "n/a" if v is None else format(v, fmt)


def print_summary(summary: dict, artifacts: str) -> None:
    s = summary
    print(LINE)
    print(f"BACKTEST SUMMARY  ({s['strategy']}, {s['broker']}, run {s['run_id']})")
    print(LINE)
    print(f"Period:            {s['start'][:10]} .. {s['end'][:10]}")
    print(f"Initial equity:    $ {_num(s['initial_equity']):>14}")
    print(f"Final equity:      $ {_num(s['final_equity']):>14}")
    print(f"Total return:      {_pct(s['total_return']):>16}   CAGR {_pct(s['cagr'])}")
    print(f"Sharpe / Sortino:  {_num(s['sharpe'], '.2f'):>16}   / {_num(s['sortino'], '.2f')}")
    print(f"Max drawdown:      {_pct(s['max_drawdown']):>16}   Calmar {_num(s['calmar'], '.2f')}")
    print(f"Volatility:        {_pct(s['volatility']):>16}   Turnover {_num(s['turnover'], '.2f')}x")
    print(f"Cycles / orders:   {s['n_cycles']:>16,}   / {s['n_orders']:,} ({s['n_rejected']:,} rejected)")
    print(f"Fills:             {s['n_fills']:>16,}")
    print(f"Fees / slippage:   $ {_num(s['fees_paid']):>14}   / $ {_num(s['slippage_cost'])}")
    print(f"Config hash:       {s['config_hash']:>16}")
    print(LINE)
    print(f"Artifacts: {artifacts}")
    print(f"Report:    {artifacts}/report.html")


def print_runs(df) -> None:
    if df.empty:
        print("no runs recorded yet (try `parity demo`)")
        return
    cols = ["run_id", "strategy", "mode", "broker", "start", "end", "final_equity", "status"]
    rows = df[cols].fillna("")
    widths = {c: max(len(c), *(len(_cell(v)) for v in rows[c])) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for _, r in rows.iterrows():
        print("  ".join(_cell(r[c]).ljust(widths[c]) for c in cols))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    s = str(v)
    return s[:10] if len(s) > 19 and s[4] == "-" else s
