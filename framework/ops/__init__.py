"""Operations: what happens around the trading cycle once a strategy leaves research.

- ``track``      several runs of one strategy read from the ledger as one track record
- ``replay``     paper/live cycles replayed through a simulated broker handed in by the CLI
- ``reconcile``  order-by-order paper-vs-simulation matching, shortfall and tracking error (SPEC §12)
- ``calibrate``  slippage and fee settings fitted to recorded fills
- ``sync``       the ledger brought up to date with a broker (working orders, fills, positions)
- ``nightly``    the nightly report of every paper/live strategy and its index page (SPEC §10)
- ``promotion``  promotion gates, evidence and the audit record (SPEC §13)
- ``yamledit``   line edits of config files that keep every other byte as it was
- ``pages``, ``text``   the HTML pages and figures, and the terminal output, of the above

Nothing here imports ``brokers``: the composition root (``framework.cli.ops``) builds the
simulated broker and the venue brokers and passes them in.
"""
