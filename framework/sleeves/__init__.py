"""Several strategies on one account (SPEC §18): sleeves, netted orders, P&L per strategy.

``netting`` holds the arithmetic (sleeve targets, the account check, crossings, fill shares),
``book`` the sleeves' books and the journal wrapper that allocates fills, ``cycle`` the layer
around the one pipeline, ``replay`` the portfolio backtest driver, ``report`` the per-sleeve view,
``compare`` paper vs simulation per sleeve, ``nightly`` the account and sleeve reports of the nightly.
"""
