"""Broker implementations: simulated, alpaca, coinbase. Only the CLI imports this package."""
