"""Coinbase Advanced Trade adapter (coinbase-advanced-py). The only package that imports ``coinbase``."""
