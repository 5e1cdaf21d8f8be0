"""CoinbaseBroker against the venue as it really is (issue 12, catalogue rows 1, 5, 7, 15, 18), through
the real coinbase-advanced-py SDK and the local server with the behaviour switched on: USDC at par and
vaults left out of equity, an unpriceable holding named, REVERSAL/CORRECTION fills kept as adjusting
rows, ``limit_only`` products traded with limits. Sources: docs/venue_behaviours_confirmed.md."""

from __future__ import annotations

import numpy as np
import pytest

from framework.accounts import Account, Environment
from framework.errors import DataError
from framework.types import OrderStatus
from tests.brokers.coinbase.test_adapter import make_batch, make_broker
from tests.servers.coinbase_server import CoinbaseServer


@pytest.fixture
def server():
    with CoinbaseServer(cash_usd=0.0, private_rate_limit=None, public_rate_limit=None) as srv:
        yield srv


def test_equity_is_usd_plus_usdc_at_par_plus_coins_and_vaults_are_left_out(server):
    """Row 1: 10,000 USDC + 0.1 BTC at 50,000 is 15,000 of equity and 10,000 of cash; vaults are not
    spendable and count for nothing."""
    server.set_balance("USDC", "10000")
    server.set_balance("BTC", "0.1")
    server.add_vault("BTC", "5")
    server.add_vault("USDC", "2500")
    acct = make_broker(server).account()
    assert acct.equity == pytest.approx(15_000.0, rel=1e-4)
    assert acct.cash == pytest.approx(10_000.0)
    assert [(p.symbol, p.qty) for p in acct.positions] == [("BTC/USD", pytest.approx(0.1))]
    assert acct.buying_power == 0.0        # the BTC-USD orders Parity sends spend USD


def test_a_holding_that_cannot_be_priced_is_an_error_naming_it(server):
    server.set_balance("USDC", "100")
    server.set_balance("ZZZ", "3")          # no ZZZ-USD product: nothing prices it
    with pytest.raises(DataError) as e:
        make_broker(server).account()
    assert "ZZZ" in str(e.value) and "cannot be priced" in str(e.value)


def test_reversal_and_correction_are_booked_as_adjusting_rows(server, tmp_path):
    """Row 5a: adjusted fills reuse the trade_id; each is booked under an id of its own (never dropped
    by the unique index), and the ledger's position follows the venue's balance."""
    from framework.journal import WriteAheadJournal
    from framework.ledger import Ledger

    server.set_balance("USD", "100000")
    broker = make_broker(server)
    batch = make_batch(broker, [("BTC/USD", 1, 0.1)])
    rep = broker.execute(batch)
    assert rep.status.tolist() == [OrderStatus.FILLED]
    tid = rep.fills.trade_ids[0]
    server.correct_fill(tid, size="0.08")
    state = broker.lookup(batch.client_order_ids())[batch.client_order_ids()[0]]
    again = broker.resume(batch, [state])
    assert len(again.fills) == 3 and len(set(again.fills.trade_ids)) == 3
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        ledger.start_run("r1", "t", "", "live", "coinbase", 100_000.0, batch.universe.symbols, {})
        acct = Account("coinbase", Environment.LIVE, "test")
        j = WriteAheadJournal(ledger, "r1", acct)
        j.intents(0, batch)
        j.update(rep)
        j.update(again)
        j.update(again)           # reported again: booked once
        rows = ledger.db.execute("SELECT trade_id, qty FROM fills WHERE run_id='r1' ORDER BY rowid").fetchall()
        held = ledger.positions(acct.key)
    finally:
        ledger.close()
    assert len(rows) == 3
    assert sorted(q for _, q in rows) == [pytest.approx(-0.1), pytest.approx(0.08), pytest.approx(0.1)]
    venue_btc = broker.balances()["BTC"]
    assert held["BTC/USD"] == pytest.approx(sum(venue_btc), abs=1e-12)


def test_limit_only_product_is_traded_with_a_limit_order(server):
    """Row 7b: a limit_only book refuses market orders; Parity sends a limit through the price."""
    server.set_balance("USD", "100000")
    server.set_product("BTC-USD", limit_only=True)
    broker = make_broker(server)
    batch = make_batch(broker, [("BTC/USD", 1, 0.1)])
    assert batch.universe.limit_only is not None and batch.universe.limit_only.tolist() == [True]
    rep = broker.execute(batch)
    assert rep.status.tolist() == [OrderStatus.FILLED], rep.messages
    venue = server.orders()[-1]
    assert "limit_limit_gtc" in venue["order_configuration"]
    np.testing.assert_allclose(rep.filled_qty, [0.1])


def test_a_401_from_throttling_is_retried_before_the_key_is_blamed(server):
    """Row 15 (P): coinbase-advanced-py#60 saw throttling answered "401 Unauthorized"."""
    server.set_balance("USD", "1000")
    slept: list[float] = []
    broker = make_broker(server, sleep=slept.append)
    server.inject("401_throttle", path_prefix="/accounts", count=2)
    assert broker.account().cash == pytest.approx(1000.0)
    assert len(slept) >= 2


def test_the_fee_tier_from_transaction_summary_sizes_the_buying_power_headroom(server):
    """Row 18: the user's taker rate (here 0.25%, not the configured 0.6%) is what buys leave room for."""
    from framework.costs import VenueFees
    from framework.venue_config import load_venue

    server.configure(pricing_tier="Advanced 3", fee_rate=0.0025, maker_fee_rate=0.0015)
    from brokers.coinbase.broker import CoinbaseBroker

    configured = VenueFees.from_venue(load_venue("coinbase"))
    broker = make_broker(server)
    broker = CoinbaseBroker(broker.endpoints, fees=configured, retry=broker.retry, options=broker.options)
    fees = broker.sizing_fees()
    assert fees is not None and fees.crypto_bps == pytest.approx(25.0)
    assert configured.crypto_bps != pytest.approx(25.0)
