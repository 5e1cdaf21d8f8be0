"""Signal generators: bars in, signal archive out. They import only ``framework``.

The generator interface (SPEC §19): a strategy config may name a generator,
``generator: {name: momentum, params: {lookback: 40}}``, and the archive is then generated from the
strategy's bars instead of read from ``signals.path``. A generator is a function

    generate(bars: pd.DataFrame, *, strategy: str, **params) -> pd.DataFrame

taking long bars (timestamp, symbol, open, high, low, close, volume) and returning archive rows
(symbol, time, side, weight, confidence, strategy, ...: SPEC §4), a pure function of its inputs.
Its keyword parameters are what a sweep varies (``--param generator.lookback=20,40``).
``GENERATORS`` names the built-in ones; any other ``module:function`` path works too.
"""

GENERATORS = {
    "momentum": "strategies.momentum:momentum_signals",
    "noise": "strategies.noise:noise_signals",
}
