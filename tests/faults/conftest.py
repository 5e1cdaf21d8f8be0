"""Fault and kill tests over the local Alpaca and Coinbase servers (see tests/faults/*.py).

``PARITY_FAULT_RUNS`` (default 20) sets the randomized cases per kill point and venue
(``PARITY_FAULT_RUNS_ALPACA`` / ``PARITY_FAULT_RUNS_COINBASE`` per venue); ``PARITY_FAULT_CLIENT=subprocess``
runs ``python -m framework`` instead of forks of a pre-warmed process. ``-m "not faults"`` skips them.
"""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: kill/fault/load tests against the local venue servers")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from tests.faults.scenario import KILL_COUNTS, STATS

    if not STATS["client_runs"]:
        return
    tr = terminalreporter
    points = sorted(KILL_COUNTS)
    tr.write_sep("-", "fault harness")
    for k in points:
        tr.write_line(f"  kill point {k:<28} {KILL_COUNTS[k]:>4} runs killed and recovered")
    tr.write_line(f"  SIGKILLs: {STATS['kill_runs']} over {len(points)} venue kill points; fault runs: "
                  f"{STATS['fault_runs']} with {STATS['faults_injected']} injected faults hit; "
                  f"duplicates found: {STATS['duplicates']}; lost fills: {STATS['lost_fills']}; "
                  f"parity processes: {STATS['client_runs']}")
