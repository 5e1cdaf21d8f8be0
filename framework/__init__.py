"""Parity: one pipeline (signals -> targets -> risk -> rebalancer -> broker -> ledger -> report)."""

__version__ = "0.1.0"
