"""``parity sweep`` (SPEC §19): many backtests of one strategy, locally or on a Dask cluster.

points.py   the grid/random points over dotted config keys, walk-forward windows, ids
point.py    ONE function that runs a point through the same build/replay as ``parity backtest``
runner.py   the local process pool or the Dask cluster (data sent to each worker once)
sweep.py    the command end to end: resumable runs into the ledger, DSR, best K runs, report
dsr.py      the Deflated Sharpe Ratio (Bailey and López de Prado, 2014)
report.py   reports/sweep-ID/: sweep.json, points.csv, sweep.html
"""
