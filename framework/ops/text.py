"""Human-readable output of the operations commands (``--json`` prints the dicts instead)."""

from __future__ import annotations

from pathlib import Path

LINE = "=" * 62


def _f(v, spec: str = ",.2f", none: str = "n/a") -> str:
    if v is None:
        return none
    text = format(v, spec)
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def _bps(v) -> str:
    return _f(None if v is None else (0.0 if abs(v) < 5e-4 else v), "+.3f")   # no "-0.000" from float noise


def _slippage(s: dict) -> str:
    if s["model"] == "fixed_bps":
        return f"{{model: fixed_bps, bps: {s['bps']:g}}}"
    return f"{{model: spread_impact, spread_bps: {s['spread_bps']:g}, k: {s['k']:g}}}"


def print_reconciliation(r: dict, out: Path) -> None:
    """The summary of ``parity compare PAPER_RUN``."""
    o, s, t, sim = r["orders"], r["shortfall"], r["tracking"], r["simulation"]
    te = None if t["tracking_error"] is None else t["tracking_error"] * 100
    print(LINE)
    print(f"PAPER VS SIMULATION  ({r['strategy']}, {r['mode']}, {r['broker']}; {r['n_cycles']} cycle(s) "
          f"in {len(r['runs'])} run(s))")
    print(LINE)
    print(f"Simulation:        bars from {sim['bars']}; fill {sim['fill']}; "
          f"slippage {_slippage(sim['slippage'])}")
    if r["config_hash"] != r["replay_config_hash"]:
        print(f"Note:              the config changed since these runs ({r['config_hash']} -> "
              f"{r['replay_config_hash']}); the replay uses the current one")
    print(f"Orders:            {o['paper']} paper, {o['simulated']} simulated, {o['matched']} matched "
          f"({o['matched_by_client_order_id']} by client order id)")
    print(f"One side only:     {o['only_paper']} paper only, {o['only_simulated']} simulated only")
    print(f"Fill states:       {o['filled']} filled, {o['partial']} partial, {o['missed']} missed, "
          f"{o['sim_unfilled']} unfilled in simulation")
    print(f"Shortfall:         {_bps(s['weighted_bps'])} bps notional-weighted (mean {_bps(s['mean_bps'])}, "
          f"min {_bps(s['min_bps'])}, max {_bps(s['max_bps'])}); cost $ {_f(s['cost'])}")
    print(f"Fees:              paper $ {_f(r['fees']['paper'])}, simulated $ {_f(r['fees']['simulated'])}")
    for e in r.get("exits", []):     # protective exits that fired (SPEC §20), on either side
        print(f"Exit {e['leg']:<5}        {e['symbol']} {e['side']}: paper {e['paper_fill_time'] or '-'} at "
              f"{_f(e['paper_price'], '.4f')}, simulated {e['sim_fill_time'] or '-'} at {_f(e['sim_price'], '.4f')} "
              f"({_bps(e['shortfall_bps'])} bps)")
    print(f"Paper fill delay:  median {_f(r['timing']['paper_median_delay_s'], '.3f')} s")
    print(f"Tracking error:    {_f(te, '.4f')}% (RMS of {t['days']} daily return difference(s)); "
          f"final equity paper $ {_f(t['final_equity_paper'])}, simulated $ {_f(t['final_equity_sim'])}")
    print(LINE)
    print(f"Report: {out / 'reconcile.html'}")


def print_calibration(item: dict, write: bool) -> None:
    """The summary of ``parity calibrate`` for one strategy."""
    b, a, f = item["shortfall_before"], item["shortfall_after"], item["fit"]
    print(LINE)
    print(f"CALIBRATION  ({item['strategy']}; {item['observations']} matched fill(s) "
          f"in {len(item['runs'])} run(s))")
    print(LINE)
    print(f"Fitted:            fixed {f['fixed_bps']:.3f} bps; spread {f['spread_bps']:.3f} bps, "
          f"k {f['k']:.4g}" + ("" if f["k_fitted"] else " (k kept: no volume information)"))
    print(f"Strategy setting:  simulation.slippage: {_slippage(item['current'])}")
    print(f"Proposed:          simulation.slippage: {_slippage(item['proposed'])}   "
          f"({item['strategy_file']})")
    print(f"Shortfall before:  {_bps(b['weighted_bps'])} bps weighted, RMS {_f(b['rms_bps'], '.3f')} bps")
    print(f"Shortfall after:   {_bps(a['weighted_bps'])} bps weighted, RMS {_f(a['rms_bps'], '.3f')} bps")
    for fee in item["fees"]:
        state = "match the venue file" if fee["ok"] else (
            f"DIFFER: proposed {item['venue_file']} asset_classes.{fee['asset_class']}.fees"
            f".tiers[{fee['tier']}].taker_bps {fee['configured_taker_bps']:g} -> "
            f"{fee['implied_taker_bps']:.2f}")
        print(f"Fees {fee['asset_class']:<7}       recorded $ {fee['recorded']:,.4f} vs venue file "
              f"$ {fee['model']:,.4f} on $ {fee['notional']:,.0f} ({fee['fills']} fills): {state}")
    if write:
        print("Written:           " + (", ".join(item["written"]) or "nothing changed"))
        if item["written"]:
            print("Note:              the config hash changed: backtest again and promote again")
    else:
        print("Nothing written (use --write to write the proposed settings).")
    print(LINE)
