"""``parity data fetch``: market data from Alpaca or Coinbase into the local store."""
