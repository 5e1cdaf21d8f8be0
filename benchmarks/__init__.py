"""Parity's benchmark (SPEC §15): ``python -m benchmarks`` / ``make bench``.

Modules: ``workloads`` (deterministic workloads), ``peers`` (vectorbt and backtrader adapters,
PeerResult, memory probe), ``run_parity`` (Parity's adapter), ``one`` (one engine x one workload
in a fresh process), ``__main__`` (the harness and the table). See ``benchmarks/README.md``.
"""
