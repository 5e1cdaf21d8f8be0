"""What a portfolio's account holds, sleeve by sleeve (``status --portfolio``, the backtest's
``sleeves.json``, the nightly's account report).

Each sleeve: the cash it was funded with, its cash, positions, fees, equity and P&L (equity less
funding). The unallocated rest: the account's cash the sleeves do not hold and the positions no
sleeve owns (the user's own among them); its P&L is its value now less what the account held
beyond the sleeves' funding when the portfolio started. The account: equity and P&L since the
portfolio started. The sleeves' P&L plus the rest's is the account's, to the cent.
"""

from __future__ import annotations

from framework.sleeves.book import ACCOUNT, UNALLOCATED, SleeveBook


def sleeve_report(book: SleeveBook, account_equity: float, account_cash: float,
                  account_positions: dict[str, float], marks: dict[str, float]) -> dict:
    """The account, sleeve by sleeve, at ``marks`` (values in the quote currency)."""
    vals = book.values(account_equity, account_cash, account_positions, marks)
    start = book.start_equity if book.start_equity is not None else account_equity
    sleeves = {}
    for name in book.names():
        e, c, g = vals[name]
        f = book.funded.get(name, 0.0)
        sleeves[name] = {"funded": round(f, 2), "cash": round(c, 2), "equity": round(e, 2), "pnl": round(e - f, 2),
                         "fees": round(book.fees.get(name, 0.0), 2), "gross_exposure": round(g, 2),
                         "exposure_pct": round(g / e, 6) if e > 0 else 0.0,
                         "positions": {s: q for s, q in sorted(book.pos.get(name, {}).items()) if abs(q) > 1e-12}}
    u_e, u_c, u_g = vals[UNALLOCATED]
    u_start = start - sum(book.funded.values())
    a_e, a_c, a_g = vals[ACCOUNT]
    return {"portfolio": book.portfolio, "account": book.account, "start_equity": round(start, 2),
            "sleeves": sleeves,
            "unallocated": {"cash": round(u_c, 2), "equity": round(u_e, 2), "pnl": round(u_e - u_start, 2),
                            "gross_exposure": round(u_g, 2),
                            "positions": book.unallocated_positions(account_positions)},
            "total": {"equity": round(a_e, 2), "cash": round(a_c, 2), "pnl": round(a_e - start, 2),
                      "gross_exposure": round(a_g, 2), "exposure_pct": round(a_g / a_e, 6) if a_e > 0 else 0.0,
                      "sleeves_plus_unallocated": round(sum(v[0] for k, v in vals.items() if k != ACCOUNT), 2)}}


def print_report(rep: dict, echo=print) -> None:
    """The report as a table: one row per sleeve, the unallocated rest, the account."""
    echo(f"SLEEVES  (portfolio {rep['portfolio']}, account {rep['account']}, started at "
         f"$ {rep['start_equity']:,.2f})")
    echo(f"  {'sleeve':<16} {'funded':>14} {'cash':>14} {'equity':>14} {'P&L':>12} {'fees':>9} {'exposure':>9}")
    for name, s in rep["sleeves"].items():
        echo(f"  {name:<16} {s['funded']:>14,.2f} {s['cash']:>14,.2f} {s['equity']:>14,.2f} {s['pnl']:>12,.2f} "
             f"{s['fees']:>9,.2f} {s['exposure_pct'] * 100:>8.2f}%")
    u = rep["unallocated"]
    echo(f"  {'(unallocated)':<16} {'':>14} {u['cash']:>14,.2f} {u['equity']:>14,.2f} {u['pnl']:>12,.2f}"
         + (f"   holds {', '.join(f'{q:g} {s}' for s, q in u['positions'].items())} (not Parity's: left alone)"
            if u["positions"] else ""))
    t = rep["total"]
    echo(f"  {'account':<16} {'':>14} {t['cash']:>14,.2f} {t['equity']:>14,.2f} {t['pnl']:>12,.2f} {'':>9} "
         f"{t['exposure_pct'] * 100:>8.2f}%")
