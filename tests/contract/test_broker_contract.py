"""One contract every Broker must pass (STYLE example 6, the checklist in framework/broker.py).

The same tests run against each venue; what differs between venues lives in one fixture per
venue (a ``Venue``): the SimulatedBroker over tiny bars (time passes by moving its clock), and
AlpacaBroker against the local Alpaca server in a thread, CoinbaseBroker against the local HTTPS
Coinbase server (crypto only: it trades ETH/USD and BTC/USD). Adding a venue is one more fixture
named ``<name>_venue`` and its name in ``VENUES``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from framework.broker import Broker
from framework.errors import DataError
from framework.types import ExecutionReport, OrderBatch, OrderStatus, OrderType, Universe
from tests.conftest import bar_arrays, simulator, universe

VENUES = ["sim", "alpaca", "coinbase"]
EQUITY, CRYPTO = "AAPL", "BTC/USD"
SYMBOLS = (EQUITY, CRYPTO)
LOT = {EQUITY: 10.0, CRYPTO: 0.1}        # what the contract buys
FILLED, REJECTED, CANCELED = int(OrderStatus.FILLED), int(OrderStatus.REJECTED), int(OrderStatus.CANCELED)


@dataclass
class Venue:
    """A broker under test plus the venue-specific ways to drive it."""

    name: str
    broker: Broker
    now: Callable[[], np.datetime64]                    # the batch time to stamp orders with
    pass_time: Callable[[], None]                       # let time pass (sim: next bar; live: nothing)
    far_limit: Callable[[str, float], float]            # a buy limit price that cannot fill soon
    rest: Callable[[Universe, str, float, float, str], None]   # leave a resting buy limit working
    orders_at_venue: Callable[[], int | None]           # orders the venue holds (None: not observable)
    qty_tol: float = 1e-9                               # one increment
    first: str = "AAPL"                                 # the cheaper instrument the contract trades
    second: str = "BTC/USD"                             # the dearer one, never shortable
    lot_first: float = 10.0
    lot_second: float = 0.1
    # place an order as the user would by hand (a protective sell of ``qty`` of ``symbol``); returns its
    # client order id. None: the venue has no user besides Parity (the simulator)
    user_order: Callable[[str, float], str] | None = None

    @property
    def symbols(self) -> tuple[str, str]:
        return (self.first, self.second)

    def lot(self, symbol: str) -> float:
        return self.lot_first if symbol == self.first else self.lot_second


# ------------------------------------------------------------------------------------ venues


@pytest.fixture
def sim_venue():
    times = [f"2024-01-{d:02d}T00:00:00Z" for d in range(2, 14)]
    n = len(times)
    aapl = 190.0 + np.arange(n)
    btc = 45_000.0 + 100.0 * np.arange(n)
    open_ = np.column_stack([aapl, btc])
    close = open_ + np.array([0.5, 50.0])
    bars = bar_arrays(times, list(SYMBOLS), open_, close,
                      high=np.fmax(open_, close) * 1.01, low=np.fmin(open_, close) * 0.99)
    sim = simulator(bars, universe(*SYMBOLS), cash=100_000.0)

    def pass_time() -> None:
        k = sim.bar_at(sim.clock.now())
        sim.advance_to(bars.times[min(k + 1, n - 1)])

    def rest(u: Universe, symbol: str, qty: float, limit: float, batch_id: str) -> None:
        b = _batch(u, sim.clock.now(), batch_id, [(symbol, 1, qty)], sim.prices(u), OrderType.LIMIT, [limit])
        rep = sim.execute(b)
        assert int(rep.status[0]) == int(OrderStatus.NEW), rep.messages

    yield Venue("sim", sim, now=lambda: sim.clock.now(), pass_time=pass_time,
                far_limit=lambda s, px: round(px * 0.5, 2), rest=rest, orders_at_venue=lambda: None)


@pytest.fixture
def alpaca_venue():
    from brokers.alpaca.broker import AlpacaBroker
    from brokers.alpaca.client import AlpacaEndpoints
    from brokers.live import LiveOptions, OrderRequest
    from brokers.retry import RetryPolicy
    from tests.servers.alpaca_server import AlpacaServer

    # crypto_fee_bps=0: Alpaca takes crypto fees in the coin received, which would make a BTC
    # position differ from filled_qty by the fee; the fee path is tested in tests/brokers/alpaca.
    with AlpacaServer(key="test-key", secret="test-secret", cash=100_000.0, crypto_fee_bps=0.0) as srv:
        broker = AlpacaBroker(AlpacaEndpoints("test-key", "test-secret", True, srv.url, srv.url, timeout=5.0),
                              retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
                              options=LiveOptions(order_timeout_s=1.0, poll_interval_s=0.01))

        def rest(u: Universe, symbol: str, qty: float, limit: float, batch_id: str) -> None:
            from framework.order_ids import client_order_id

            # the live loop cancels what is unfilled after order_timeout_s, so a resting order
            # is placed with the adapter's own submit primitive (the venue keeps it working)
            cid = client_order_id(batch_id, symbol, "add")
            broker._submit(OrderRequest(cid, symbol, 1, qty, "limit", limit))

        def user_stop(symbol: str, qty: float) -> str:
            stop = round(float(srv.get_price(symbol)) * 0.5, 2)
            return srv.add_user_order(symbol, "sell", qty=qty, type="stop", stop_price=stop)["client_order_id"]

        yield Venue("alpaca", broker, now=lambda: np.datetime64(time.time_ns(), "ns"), pass_time=lambda: None,
                    far_limit=lambda s, px: round(px * 0.5, 2), rest=rest,
                    orders_at_venue=lambda: len(srv.orders_submitted()), user_order=user_stop)
        broker.close()


@pytest.fixture
def coinbase_venue():
    from brokers.coinbase.broker import CoinbaseBroker
    from brokers.coinbase.client import CoinbaseEndpoints
    from brokers.live import LiveOptions, OrderRequest
    from brokers.retry import RetryPolicy
    from tests.servers.coinbase_server import CoinbaseServer

    # Coinbase trades crypto only: the contract's two instruments are ETH/USD and BTC/USD.
    with CoinbaseServer(cash_usd=100_000.0, private_rate_limit=None, fee_rate=0.0) as srv:
        broker = CoinbaseBroker(CoinbaseEndpoints(srv.api_key_name, srv.private_key_pem, None, srv.base_url,
                                                  srv.cert_path, timeout=5.0),
                                retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
                                options=LiveOptions(order_timeout_s=1.0, poll_interval_s=0.01))

        def rest(u: Universe, symbol: str, qty: float, limit: float, batch_id: str) -> None:
            from framework.order_ids import client_order_id

            cid = client_order_id(batch_id, symbol, "add")
            broker._submit(OrderRequest(cid, symbol, 1, qty, "limit", limit))

        def user_limit(symbol: str, qty: float) -> str:
            pid = symbol.replace("/", "-")
            price = broker.prices(broker.instruments([symbol]))[0] * 2   # a resting take-profit sell
            ans = srv.add_user_order(pid, "SELL", f"{qty:.8f}", f"{price:.2f}")
            return ans.get("success_response", {}).get("client_order_id") or ans["client_order_id"]

        yield Venue("coinbase", broker, now=lambda: np.datetime64(time.time_ns(), "ns"), pass_time=lambda: None,
                    far_limit=lambda s, px: round(px * 0.5, 2), rest=rest,
                    orders_at_venue=lambda: len(srv.orders()), first="ETH/USD", second="BTC/USD",
                    lot_first=10.0, lot_second=0.1, qty_tol=1e-8, user_order=user_limit)
        broker.close()


@pytest.fixture(params=VENUES)
def venue(request) -> Venue:
    return request.getfixturevalue(f"{request.param}_venue")


# ------------------------------------------------------------------------------------ helpers


def _batch(u: Universe, t: np.datetime64, batch_id: str, legs, prices: np.ndarray,
           order_type: OrderType = OrderType.MARKET, limit=None, leg: str = "add") -> OrderBatch:
    idx = np.array([u.index[s] for s, _, _ in legs], np.int64)
    side = np.array([sd for _, sd, _ in legs], np.int8)
    qty = np.array([q for _, _, q in legs], float)
    return OrderBatch(u, t, batch_id, leg, idx, side, qty, prices[idx], order_type,
                      None if limit is None else np.asarray(limit, float))


def held(broker: Broker, symbol: str) -> float:
    return sum(p.qty for p in broker.positions() if p.symbol == symbol)


def buy_lots(v: Venue, batch_id: str = "contract@buy") -> tuple[Universe, OrderBatch, ExecutionReport]:
    u = v.broker.instruments(list(v.symbols))
    b = _batch(u, v.now(), batch_id, [(s, 1, v.lot(s)) for s in v.symbols], v.broker.prices(u))
    rep = v.broker.execute(b)
    v.pass_time()
    return u, b, rep


def assert_aligned(rep: ExecutionReport, batch: OrderBatch, fresh: bool = True) -> None:
    """The report is aligned with its batch; its fills are this call's fills (a fresh batch: all of
    them; a re-run may report none, or the same ones again, but never more than the order filled)."""
    n = len(batch)
    assert rep.batch is batch
    assert rep.status.shape == rep.filled_qty.shape == rep.avg_price.shape == (n,)
    f = rep.fills
    assert np.all(f.order_pos >= 0) and np.all(f.order_pos < n)
    np.testing.assert_array_equal(f.symbol_idx, batch.symbol_idx[f.order_pos])
    np.testing.assert_array_equal(f.side, batch.side[f.order_pos])
    per_order = np.bincount(f.order_pos, weights=f.qty, minlength=n)
    if fresh:
        np.testing.assert_allclose(per_order, rep.filled_qty, atol=1e-9)
    else:
        assert np.all(per_order <= rep.filled_qty + 1e-9)


# ------------------------------------------------------------------------------------ the contract


def test_instruments_known_symbols_give_a_universe(venue):
    u = venue.broker.instruments(list(venue.symbols))
    assert isinstance(u, Universe)
    assert u.symbols == venue.symbols
    assert u.index == {venue.first: 0, venue.second: 1}
    assert list(u.crypto) == ["/" in venue.first, True]
    assert np.all(u.qty_increment > 0)
    assert not u.shortable[1], "crypto is never shortable"


def test_instruments_unknown_symbol_raises_data_error(venue):
    with pytest.raises(DataError) as ei:
        venue.broker.instruments([venue.first, "ZZZZ"])
    assert "ZZZZ" in str(ei.value)


def test_account_equity_is_cash_plus_positions(venue):
    acct = venue.broker.account()
    assert acct.equity == pytest.approx(100_000.0) and acct.cash == pytest.approx(100_000.0)
    assert acct.buying_power > 0
    buy_lots(venue)
    acct = venue.broker.account()
    values = sum(p.market_value for p in venue.broker.positions())
    assert values > 0
    assert acct.equity == pytest.approx(acct.cash + values, rel=1e-9, abs=1e-6)
    assert acct.cash < 100_000.0


def test_prices_are_aligned_and_positive(venue):
    u = venue.broker.instruments(list(venue.symbols))
    px = venue.broker.prices(u)
    assert px.shape == (len(u),)
    assert np.all(np.isfinite(px)) and np.all(px > 0)
    assert px[u.index[venue.second]] > px[u.index[venue.first]]   # BTC is dearer than a share of AAPL in both markets


def test_execute_buy_batch_fills_and_positions_reflect_it(venue):
    before = {s: held(venue.broker, s) for s in venue.symbols}
    u, b, rep = buy_lots(venue)
    assert_aligned(rep, b)
    assert rep.status.tolist() == [FILLED, FILLED], rep.messages
    np.testing.assert_allclose(rep.filled_qty, b.qty, atol=venue.qty_tol)
    assert np.all(rep.avg_price > 0)
    f = rep.fills
    assert len(f) >= len(b)
    assert np.all(f.qty > 0) and np.all(f.price > 0) and np.all(f.fee >= 0)
    assert rep.n_rejected == 0
    for s in venue.symbols:
        assert held(venue.broker, s) == pytest.approx(before[s] + venue.lot(s), abs=venue.qty_tol)


def test_execute_sell_batch_reduces_the_position(venue):
    u, _, _ = buy_lots(venue)
    sell = _batch(u, venue.now(), "contract@sell", [(venue.first, -1, 4.0), (venue.second, -1, 0.04)],
                  venue.broker.prices(u), leg="reduce")
    rep = venue.broker.execute(sell)
    venue.pass_time()
    assert_aligned(rep, sell)
    assert rep.status.tolist() == [FILLED, FILLED], rep.messages
    assert np.all(rep.fills.side == -1)
    assert held(venue.broker, venue.first) == pytest.approx(venue.lot(venue.first) - 4.0, abs=venue.qty_tol)
    assert held(venue.broker, venue.second) == pytest.approx(venue.lot(venue.second) - 0.04, abs=venue.qty_tol)


def test_reexecuting_the_same_batch_sends_nothing_new(venue):
    u, b, first = buy_lots(venue)
    positions = {s: held(venue.broker, s) for s in venue.symbols}
    cash = venue.broker.account().cash
    sent = venue.orders_at_venue()
    again = venue.broker.execute(b)          # the same batch: the same client order ids
    venue.pass_time()
    assert {s: held(venue.broker, s) for s in venue.symbols} == pytest.approx(positions, abs=venue.qty_tol), \
        "re-executing a batch must not trade it a second time"
    assert venue.broker.account().cash == pytest.approx(cash)
    assert venue.orders_at_venue() == sent
    assert_aligned(again, b, fresh=False)
    assert again.status.tolist() == first.status.tolist()
    np.testing.assert_allclose(again.filled_qty, first.filled_qty, atol=venue.qty_tol)
    np.testing.assert_allclose(again.avg_price, first.avg_price, rtol=1e-9)


def test_refused_order_is_rejected_with_a_message_and_the_rest_goes_through(venue):
    u = venue.broker.instruments(list(venue.symbols))
    px = venue.broker.prices(u)
    # sell 1 BTC while holding none: crypto cannot be sold short anywhere (Alpaca: HTTP 403)
    b = _batch(u, venue.now(), "contract@refused", [(venue.second, -1, 1.0), (venue.first, 1, 2.0)], px)
    rep = venue.broker.execute(b)          # must not raise
    venue.pass_time()
    assert_aligned(rep, b)
    assert int(rep.status[0]) == REJECTED
    assert rep.messages.get(0), "a rejected order carries the venue's reason"
    assert int(rep.status[1]) == FILLED, rep.messages
    assert rep.n_rejected == 1
    assert held(venue.broker, venue.second) == 0.0
    assert held(venue.broker, venue.first) == pytest.approx(2.0, abs=venue.qty_tol)


def test_lookup_finds_executed_orders_by_client_id(venue):
    u, b, rep = buy_lots(venue)
    cids = b.client_order_ids()
    found = venue.broker.lookup(cids + ["p-never-sent-0000000000"])
    assert set(found) == set(cids)
    for cid, sym, q in zip(cids, b.symbols(), b.qty.tolist()):
        st = found[cid]
        assert st.client_order_id == cid and st.symbol == sym and st.side == 1
        assert st.status == FILLED
        assert st.filled_qty == pytest.approx(q, abs=venue.qty_tol)
        assert st.avg_price is not None and st.avg_price > 0


def test_open_orders_and_cancel_on_a_resting_limit(venue):
    u = venue.broker.instruments(list(venue.symbols))
    px = venue.broker.prices(u)
    limit = venue.far_limit(venue.first, float(px[u.index[venue.first]]))
    venue.rest(u, venue.first, 1.0, limit, "contract@rest")
    from framework.order_ids import client_order_id

    cid = client_order_id("contract@rest", venue.first, "add")
    working = venue.broker.open_orders()
    assert [o.client_order_id for o in working] == [cid]
    o = working[0]
    assert o.symbol == venue.first and o.side == 1 and o.filled_qty == 0.0
    assert o.status in (int(OrderStatus.NEW), int(OrderStatus.PLANNED))
    assert o.order_type == "limit"
    venue.pass_time()
    assert [o.client_order_id for o in venue.broker.open_orders()] == [cid], "a far limit keeps resting"
    out = venue.broker.cancel([cid])
    assert [(s.client_order_id, s.status) for s in out] == [(cid, CANCELED)]
    assert venue.broker.open_orders() == []
    assert held(venue.broker, venue.first) == 0.0


def test_execute_of_an_unfillable_limit_leaves_no_orphan(venue):
    """Whatever a venue does with a limit that cannot fill (keep it working, or cancel it after the
    order timeout), the report and the venue agree: an open status is listed by open_orders(),
    anything else is not."""
    u = venue.broker.instruments(list(venue.symbols))
    px = venue.broker.prices(u)
    limit = venue.far_limit(venue.first, float(px[u.index[venue.first]]))
    b = _batch(u, venue.now(), "contract@limit", [(venue.first, 1, 1.0)], px, OrderType.LIMIT, [limit])
    rep = venue.broker.execute(b)
    assert_aligned(rep, b)
    assert rep.filled_qty[0] == 0.0
    listed = [o.client_order_id for o in venue.broker.open_orders()]
    if OrderStatus(int(rep.status[0])).is_open:
        assert listed == b.client_order_ids()
    else:
        assert int(rep.status[0]) == CANCELED and rep.messages.get(0)
        assert listed == []


def test_execute_accepts_a_batch_over_a_sub_universe(venue):
    """A Universe from instruments() is the documented way to build a batch, for any symbols."""
    u = venue.broker.instruments([venue.first])
    b = _batch(u, venue.now(), "contract@sub", [(venue.first, 1, 3.0)], venue.broker.prices(u))
    rep = venue.broker.execute(b)
    venue.pass_time()
    assert rep.status.tolist() == [FILLED], rep.messages
    assert held(venue.broker, venue.first) == pytest.approx(3.0, abs=venue.qty_tol)


def test_market_open_is_a_bool_array(venue):
    u = venue.broker.instruments(list(venue.symbols))
    m = venue.broker.market_open(u)
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (len(u),)
    assert bool(m[u.index[venue.second]]), "crypto trades 24/7"


def test_execute_of_an_empty_batch_is_an_empty_report(venue):
    u = venue.broker.instruments(list(venue.symbols))
    b = OrderBatch.empty(u, venue.now(), "contract@empty", "add")
    rep = venue.broker.execute(b)
    assert len(rep.status) == 0 and len(rep.fills) == 0
    assert venue.orders_at_venue() in (None, 0)


def test_sync_returns_reports(venue):
    buy_lots(venue)
    out = venue.broker.sync()
    assert isinstance(out, list)
    assert all(isinstance(r, ExecutionReport) for r in out)


def test_describe_names_the_venue_without_secrets(venue):
    text = venue.broker.describe()
    assert isinstance(text, str) and text
    assert "test-secret" not in text



# ------------------------------------------------------------------------------------ the user's orders (§17)


def test_the_users_own_order_survives_a_cycle_and_is_listed_as_not_parity(venue):
    """Catalogue row 2: the venue lists every open order of the account; a cycle with ``unfilled:
    cancel`` cancels only Parity's, the user's protective sell survives, is listed by
    ``foreign_orders`` (what ``status`` prints as "not Parity's") and its quantity is not sold again."""
    from framework.config import RebalanceSettings, RiskLimits
    from framework.engine import Pipeline, run_cycle
    from framework.journal import BufferedJournal
    from framework.order_ids import batch_key
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.types import TargetPortfolio

    if venue.user_order is None:
        pytest.skip("the simulator has no user placing orders by hand")
    b = venue.broker
    u, _, rep = buy_lots(venue, "contract@user1")
    assert (rep.status == FILLED).all(), rep.messages
    first = venue.first
    user_cid = venue.user_order(first, venue.lot(first) / 2)
    venue.rest(u, venue.second, venue.lot(venue.second), venue.far_limit(venue.second, b.prices(u)[1]),
               "contract@rest1")
    assert [o.client_order_id for o in b.foreign_orders()] == [user_cid]
    assert all(o.owned for o in b.open_orders()) and len(b.open_orders()) == 1
    t = venue.now()
    w = np.array([0.0 if s == first else np.nan for s in u.symbols])     # sell out of the first symbol
    target = TargetPortfolio(t, batch_key("contract", t), w, np.where(np.isnan(w), np.nan, 0.9), absent_hold=True)
    p = Pipeline(b, RiskManager(RiskLimits(min_account_balance=0.0)), Rebalancer(RebalanceSettings()),
                 BufferedJournal("contract"), u, "cancel")
    res = run_cycle(p, target)
    assert [o.client_order_id for o in b.foreign_orders()] == [user_cid], "the user's order is still open"
    assert b.open_orders() == [], "Parity's own resting order was cancelled"
    assert held(b, first) == pytest.approx(venue.lot(first) / 2, abs=venue.qty_tol), \
        "the quantity the user's order holds was not sold"
    assert any(d.rule == "qty_available" for d in res.plan.plan.skipped)
