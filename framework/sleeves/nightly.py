"""The nightly for portfolios (SPEC §10, §18): one report for the account and one per sleeve.

For each ``portfolios/*.yaml``: sync the account (its orders and fills, through the journal),
allocate to the sleeves what they lack, and — when the date is today — mark the sleeves, the
unallocated rest and the account once (``nightly-YYYYMMDD-portfolio-NAME``). Then, from the ledger:
``reports/nightly/DATE/portfolio-NAME/account.json`` (the account sleeve by sleeve, the day's P&L
of each part) and ``SLEEVE.json`` per sleeve (its book and its equity per UTC day), and
``portfolios.json`` beside the strategies' ``nightly.json``. The day's P&L of the sleeves plus the
rest's is the account's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from framework.ledger import Ledger
from framework.sleeves.book import ACCOUNT, UNALLOCATED, SleeveBook
from framework.sleeves.report import sleeve_report


def discover(settings_path: str | None) -> tuple[list, list[str]]:
    """Every portfolio file beside the settings and in ``config/``, and the problems of those that do not load."""
    from framework.config import load_all
    from framework.portfolios import load_portfolio

    return load_all("portfolios", load_portfolio, settings_path)


def daily(eq: pd.DataFrame, name: str, day: str) -> tuple[dict[str, float], float | None]:
    """One part's equity at the last mark of each UTC day up to ``day``, and its P&L on ``day``."""
    rows = eq[(eq["sleeve"] == name) & (eq["time"].str[:10] <= day)]
    by_day = rows.groupby(rows["time"].str[:10])["equity"].last()
    series = {d: round(float(v), 2) for d, v in by_day.items()}
    if day not in by_day.index:
        return series, None
    before = by_day[by_day.index < day]
    base = float(before.iloc[-1]) if len(before) else None
    return series, (None if base is None else round(float(by_day[day]) - base, 2))


def report_portfolio(ledger: Ledger, portfolio, broker, account, day: str, today: bool, out: Path,
                     log: Callable[[str], None]) -> dict:
    """Sync, mark once and write one portfolio's account and sleeve reports; return its index entry."""
    from framework.journal import WriteAheadJournal
    from framework.recovery import reconcile
    from framework.session import account_lease

    name = portfolio.name
    rid = f"nightly-{day.replace('-', '')}-portfolio-{name}"
    with account_lease(ledger, account, "report nightly"):
        reconcile(ledger, broker, account, WriteAheadJournal(ledger, rid, account),
                  echo=lambda n: log(f"portfolio {name}: sync {n}"), check_positions=False)
        book = SleeveBook.load(ledger, account.key, name)
        book.catch_up()
        acct = broker.account()
        held = acct.positions or broker.positions()
        marks = {p.symbol: float(p.market_price) for p in held}
        positions = {p.symbol: p.qty for p in held}
        eq = ledger.sleeve_equity(account.key)
        if today and book.names() and not (eq["run_id"] == rid).any():
            book.mark(np.datetime64(int(pd.Timestamp.now(tz="UTC").value), "ns"), rid, acct.equity, acct.cash,
                      positions, marks)
            log(f"portfolio {name}: sleeves, rest and account marked (equity ${acct.equity:,.2f})")
        book.commit()
    rep = sleeve_report(book, acct.equity, acct.cash, positions, marks)
    eq = ledger.sleeve_equity(account.key)
    folder = out / f"portfolio-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    day_pnl = {}
    for part in [*rep["sleeves"], UNALLOCATED, ACCOUNT]:
        series, pnl = daily(eq, part, day)
        day_pnl[part] = pnl
        if part in rep["sleeves"]:
            doc = {"portfolio": name, "sleeve": part, "date": day, **rep["sleeves"][part], "day_pnl": pnl,
                   "equity_by_day": series}
            (folder / f"{part}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    account_doc = {**rep, "date": day, "day_pnl": day_pnl,
                   "equity_by_day": daily(eq, ACCOUNT, day)[0]}
    (folder / "account.json").write_text(json.dumps(account_doc, indent=2, sort_keys=True) + "\n")
    log(f"portfolio {name}: reports in {folder}")
    return {"portfolio": name, "account": account.key, "folder": folder.name, "total": rep["total"],
            "sleeves": {k: {"equity": v["equity"], "pnl": v["pnl"], "day_pnl": day_pnl.get(k)}
                        for k, v in rep["sleeves"].items()},
            "unallocated": {**rep["unallocated"], "day_pnl": day_pnl.get(UNALLOCATED)},
            "day_pnl": day_pnl.get(ACCOUNT)}


def write_index(out: Path, day: str, entries: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "portfolios.json").write_text(json.dumps({"date": day, "portfolios": entries}, indent=2,
                                                    sort_keys=True) + "\n")
