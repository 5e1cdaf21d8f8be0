"""The ledger: one SQLite database (WAL) holding runs, cycles, risk decisions, orders with their
state transitions, fills, equity snapshots, promotions and account leases.

All SQL lives in this package (``tests/test_architecture.py`` checks it). The journals
(``framework.journal``) are the only code that books orders and fills into it.
"""

from framework.ledger.columns import Coded, IsoTimes
from framework.ledger.core import Ledger
from framework.ledger.records import LeaseRecord, OrderRecord, PromotionRecord
from framework.ledger.rows import SIDE, fill_rows, iso, now_iso, order_rows, pack_prices, unpack_prices

__all__ = ["Coded", "IsoTimes", "Ledger", "LeaseRecord", "OrderRecord", "PromotionRecord", "SIDE", "fill_rows", "iso", "now_iso",
           "order_rows", "pack_prices", "unpack_prices"]
