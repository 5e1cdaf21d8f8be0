"""``compare|calibrate --portfolio NAME`` (SPEC §12, §18): paper vs simulation per sleeve.

Part of the composition root: builds the simulated broker for the replay of the portfolio's
recorded cycles and hands it to ``framework.sleeves.compare``.
"""

from __future__ import annotations

import numpy as np

from framework.cli.portfolio import _absent, _portfolio, account_rebalance, execution_of, load_sleeve_signals
from framework.config import Settings
from framework.errors import UsageError


def compare_portfolio(settings: Settings, settings_path: str | None, name) -> dict:
    """Paper vs simulation per sleeve over every recorded cycle of the portfolio (SPEC §12, §18)."""
    from brokers.simulated import SimulatedBroker
    from framework.clock import SimClock
    from framework.costs import NoFees, VenueFees, slippage_model
    from framework.journal import BufferedJournal
    from framework.ledger import Ledger
    from framework.portfolios import resolve_sleeves
    from framework.rebalance import Rebalancer
    from framework.session import sim_account
    from framework.sleeves import compare as cmp
    from framework.sleeves.book import SleeveBook
    from framework.sleeves.cycle import PortfolioCycle
    from framework.venue import universe_for
    from framework.venue_config import load_venue

    portfolio = _portfolio(name, settings_path)
    sleeves = resolve_sleeves(portfolio, settings, settings_path)
    ledger = Ledger(settings.ledger)
    try:
        runs = ledger.find_runs(strategy=f"portfolio-{portfolio.name}", modes=("paper", "live"))
        if not runs:
            raise UsageError(f"no paper or live run of portfolio {portfolio.name} in {settings.ledger}: "
                             f"run `parity execute --portfolio {portfolio.name}` first")
        account = str(runs[-1]["account"])
        cyc = cmp.cycles(ledger, account)
        if cyc.empty:
            raise UsageError(f"portfolio {portfolio.name} has no recorded cycle on {account}")
        signals = load_sleeve_signals(sleeves, portfolio, None)
        venue = load_venue(portfolio.account.broker, settings_path)
        syms = sorted({s for sig in signals.values() for s in sig.symbols} | set(cyc["symbol"]))
        universe = universe_for(venue, syms)
        bars, steps = cmp.cycle_bars(cyc, universe.symbols)
        sim = portfolio.simulation
        fees = VenueFees.from_venue(venue, sim.fee_tier) if sim.fees else NoFees()
        paper_book = SleeveBook.load(ledger, account, portfolio.name)
        market = SimulatedBroker(bars, universe, SimClock(bars.times[0]), cash=sum(paper_book.funded.values()),
                                 fill="close", fees=fees, slippage=slippage_model(sim.slippage),
                                 volume_cap=None, lookback=sim.slippage.lookback)
        run_id = f"replay-portfolio-{portfolio.name}"
        journal = BufferedJournal(run_id, sim_account(run_id))
        book = SleeveBook(journal.account.key, portfolio.name)
        cmp.fund_as(book, paper_book, steps[0][0])
        fee_rate = fees.rate(universe.crypto) if isinstance(fees, VenueFees) else 0.0
        pc = PortfolioCycle.wire(portfolio.name, sleeves, book, market, journal,
                                 Rebalancer(account_rebalance(portfolio.rebalance), fee_rate), universe,
                                 portfolio.limits(settings.execution.limits()),
                                 execution=execution_of(portfolio.rebalance), run_id=run_id)
        cmp.replay(pc, market, steps, signals, _absent(sleeves))
        marks = {s: float(p) for s, p in zip(universe.symbols, bars.close[-1].tolist()) if np.isfinite(p)}
        sim_pnl = {n: book.equity(n, marks) - book.funded.get(n, 0.0) for n in book.names()}
        paper_book, paper_pnl = cmp.paper_values(ledger, account, portfolio.name, marks)
        rows = cmp.compare(paper_pnl, sim_pnl, paper_book, book, cmp.shortfall(ledger, account), sim.slippage.bps)
    finally:
        ledger.close()
    return {"portfolio": portfolio.name, "account": account, "cycles": len(steps), "sleeves": rows}


def print_compare(result: dict, calibrate: bool = False) -> None:
    print(f"PAPER VS SIMULATION PER SLEEVE  (portfolio {result['portfolio']}, {result['account']}, "
          f"{result['cycles']} cycle(s))")
    print(f"  {'sleeve':<14} {'paper P&L':>12} {'sim P&L':>12} {'diff':>10} {'paper fees':>10} {'sim fees':>9} "
          f"{'shortfall':>10} {'sim slip':>9}")
    for name, r in result["sleeves"].items():
        sf = "n/a" if r["shortfall_bps"] is None else f"{r['shortfall_bps']:.2f}bp"
        print(f"  {name:<14} {r['paper_pnl']:>12,.2f} {r['sim_pnl']:>12,.2f} {r['pnl_diff']:>10,.2f} "
              f"{r['paper_fees']:>10,.2f} {r['sim_fees']:>9,.2f} {sf:>10} {r['sim_slippage_bps']:>7.2f}bp")
        if calibrate and r["shortfall_bps"] is not None:
            print(f"    proposal: simulation.slippage.bps: {max(r['shortfall_bps'], 0.0):.2f} in strategies/{name}.yaml")
