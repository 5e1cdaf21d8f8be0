"""Alpaca adapter (alpaca-py). The only package that imports ``alpaca``."""
