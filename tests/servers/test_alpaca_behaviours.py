"""Issue 12: the local Alpaca server answers the real alpaca-py SDK the way the real venue does for the
behaviours of catalogue rows 1-16 (sources in docs/venue_behaviours_confirmed.md)."""

from __future__ import annotations

import json

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetStatus, OrderStatus, QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest, StopOrderRequest
from pydantic import ValidationError

from tests.servers.alpaca_server import AlpacaServer, AlpacaServerProcess

KEY, SECRET = "test-key", "test-secret"


@pytest.fixture
def server():
    with AlpacaServer(key=KEY, secret=SECRET) as srv:
        yield srv


def trading(srv) -> TradingClient:
    tc = TradingClient(KEY, SECRET, paper=True, url_override=srv.url)
    tc._retry = 0
    return tc


@pytest.fixture
def tc(server):
    return trading(server)


def refused(fn, *a, **k) -> APIError:
    with pytest.raises(APIError) as ei:
        fn(*a, **k)
    return ei.value


def market(symbol, qty=None, side="buy", tif="day", notional=None, cid=None):
    return MarketOrderRequest(symbol=symbol, qty=qty, notional=notional, side=side, time_in_force=tif,
                              client_order_id=cid)


def limit(symbol, qty, price, side="buy", tif="day", cid=None, extended_hours=None):
    return LimitOrderRequest(symbol=symbol, qty=qty, limit_price=price, side=side, time_in_force=tif,
                             client_order_id=cid, extended_hours=extended_hours)


# ------------------------------------------------------------------------------------------ row 2


def test_orders_placed_by_hand_are_listed_and_hold_quantity(server, tc):
    server.set_position("AAPL", 10, 150.0)
    stop = server.add_user_order("AAPL", "sell", qty=10, type="stop", stop_price=140.0, time_in_force="gtc")
    tc.submit_order(limit("MSFT", 1, 300.0, cid="p-b1-MSFT-0"))
    listed = {o.client_order_id: o for o in tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))}
    assert set(listed) == {stop["client_order_id"], "p-b1-MSFT-0"}
    assert not stop["client_order_id"].startswith("p-")
    assert listed[stop["client_order_id"]].stop_price == "140"
    # the user's stop holds the shares: nothing is left to sell
    assert tc.get_open_position("AAPL").qty_available == "0"
    e = refused(tc.submit_order, market("AAPL", 1, "sell"))
    assert e.status_code == 403 and e.message.startswith("insufficient qty available for order")


# ------------------------------------------------------------------------------------------ row 13


def test_account_flags_are_reported_and_a_blocked_account_refuses_orders(server, tc):
    acct = tc.get_account()
    assert acct.multiplier == "1" and acct.shorting_enabled is False and acct.trading_blocked is False
    server.set_account(trading_blocked=True)
    assert tc.get_account().trading_blocked is True
    e = refused(tc.submit_order, market("AAPL", 1))
    assert e.status_code == 403 and e.code == 40310000
    server.set_account(trading_blocked=False, trade_suspended_by_user=True)
    assert tc.get_account().trade_suspended_by_user is True
    e = refused(tc.submit_order, market("AAPL", 1))
    assert e.status_code == 403 and e.message == "new orders are rejected by user request"
    server.set_account(trade_suspended_by_user=False, crypto_status="INACTIVE")
    assert tc.get_account().crypto_status.value == "INACTIVE"
    refused(tc.submit_order, market("BTC/USD", notional=100, tif="gtc"))
    assert tc.submit_order(market("AAPL", 1)).status == OrderStatus.PENDING_NEW   # equities still trade
    server.set_account(crypto_status=None)                  # crypto never enabled: no crypto_status
    assert tc.get_account().crypto_status is None
    refused(tc.submit_order, market("BTC/USD", notional=100, tif="gtc"))
    with pytest.raises(ValueError):
        server.set_account(pattern_day_trader=True)


# ------------------------------------------------------------------------------------------ row 8


def test_short_refusals_cash_account_fractional_not_shortable_hard_to_borrow(server, tc):
    e = refused(tc.submit_order, market("AAPL", 3, "sell"))
    assert e.status_code == 403 and e.code == 40310000 and e.message == "account is not allowed to short"
    server.configure(allow_short=True)
    acct = tc.get_account()
    assert acct.multiplier == "2" and acct.shorting_enabled is True
    e = refused(tc.submit_order, market("AAPL", 0.5, "sell"))
    assert e.status_code == 403 and e.message == "fractional orders are not allowed to short"
    server.set_asset("AAPL", shortable=False)
    assert refused(tc.submit_order, market("AAPL", 3, "sell")).message == "asset AAPL is not shortable"
    server.set_asset("AAPL", shortable=True, easy_to_borrow=False)
    assert tc.get_asset("AAPL").easy_to_borrow is False
    assert refused(tc.submit_order, market("AAPL", 3, "sell")).message == "asset AAPL is not easy to borrow"
    server.set_asset("AAPL", easy_to_borrow=True)
    o = tc.submit_order(market("AAPL", 3, "sell"))
    assert tc.get_order_by_id(o.id).status == OrderStatus.FILLED
    assert tc.get_open_position("AAPL").qty == "-3"
    # a margin multiplier of 1 (cash account) refuses shorts even with shorting enabled
    server.set_account(multiplier="1")
    assert refused(tc.submit_order, market("MSFT", 1, "sell")).message == "account is not allowed to short"


# ------------------------------------------------------------------------------------------ row 10


def test_crypto_buy_floor_applies_to_buys_only(server, tc):
    e = refused(tc.submit_order, market("BTC/USD", notional=9.99, tif="gtc"))
    assert e.status_code == 403 and e.code == 40310000
    assert e.message == "cost basis must be >= minimal amount of order 10"
    e = refused(tc.submit_order, limit("ETH/USD", 0.004, 2300.0, tif="gtc"))   # $9.20
    assert e.message == "cost basis must be >= minimal amount of order 10"
    # dust below $10 can be sold
    server.set_position("BTC/USD", 0.0001, 45000.0)                              # $4.50
    o = tc.submit_order(market("BTC/USD", 0.0001, "sell", tif="gtc"))
    assert tc.get_order_by_id(o.id).status == OrderStatus.FILLED
    assert server.position_qty("BTC/USD") == 0.0


# ------------------------------------------------------------------------------------------ row 11


def test_opposite_open_order_is_refused_as_a_potential_wash_trade(server, tc):
    server.set_position("AAPL", 10, 150.0)
    buy = tc.submit_order(limit("AAPL", 5, 100.0, tif="gtc"))                   # rests below the market
    e = refused(tc.submit_order, market("AAPL", 2, "sell"))
    assert e.status_code == 403 and e.code == 40310000
    assert e.message == "potential wash trade detected. use complex orders"
    # also for crypto
    tc.submit_order(limit("BTC/USD", 0.01, 40000.0, tif="gtc"))
    server.set_position("BTC/USD", 0.5, 40000.0)
    refused(tc.submit_order, market("BTC/USD", 0.1, "sell", tif="gtc"))
    # a pending cancel is still open: the sell stays refused until the cancel is final
    server.configure(async_cancel=True, fill_mode="manual")
    tc.cancel_order_by_id(buy.id)
    assert tc.get_order_by_id(buy.id).status == OrderStatus.PENDING_CANCEL
    refused(tc.submit_order, market("AAPL", 2, "sell"))
    server.process_orders()
    assert tc.get_order_by_id(buy.id).status == OrderStatus.CANCELED
    assert tc.submit_order(market("AAPL", 2, "sell")).status == OrderStatus.PENDING_NEW
    # the check can be switched off to model a venue that allows it
    server.configure(wash_trade_check=False)
    tc.submit_order(limit("MSFT", 1, 300.0, tif="gtc"))
    server.set_position("MSFT", 5, 300.0)
    tc.submit_order(limit("MSFT", 1, 400.0, "sell", tif="gtc"))


# ------------------------------------------------------------------------------------------ row 12


def test_quantity_held_by_open_sells_cannot_be_sold(server, tc):
    server.set_position("AAPL", 10, 150.0)
    tc.submit_order(limit("AAPL", 6, 250.0, "sell", tif="gtc"))
    assert tc.get_open_position("AAPL").qty_available == "4"
    e = refused(tc.submit_order, market("AAPL", 5, "sell"))
    body = json.loads(str(e))
    assert e.status_code == 403 and e.code == 40310000
    assert body["message"] == "insufficient qty available for order (requested: 5, available: 4)"
    assert body["held_for_orders"] == "6" and body["existing_qty"] == "10"
    assert tc.submit_order(market("AAPL", 4, "sell")).status == OrderStatus.PENDING_NEW


# ------------------------------------------------------------------------------------------ row 9


def test_limit_prices_must_sit_on_the_venue_increments(server, tc):
    e = refused(tc.submit_order, limit("AAPL", 1, 190.123))
    assert e.status_code == 422 and e.code == 42210000
    assert e.message == ("invalid limit_price 190.123. sub-penny increment does not fulfill minimum pricing "
                         "criteria")
    server.set_asset("PENY", price=0.5)
    e = refused(tc.submit_order, limit("PENY", 100, 0.12345))
    assert e.status_code == 422 and "sub-penny increment" in e.message
    assert tc.submit_order(limit("PENY", 100, 0.1234)).limit_price == "0.1234"
    assert tc.submit_order(limit("AAPL", 1, 190.12)).limit_price == "190.12"
    # crypto assets publish their own increment; enforcing it is a switch (the venue's answer is unconfirmed)
    assert tc.get_asset("BTC/USD").price_increment == 1.0
    server.configure(enforce_crypto_price_increment=True)
    assert refused(tc.submit_order, limit("BTC/USD", 0.01, 40000.5, tif="gtc")).status_code == 422


# ------------------------------------------------------------------------------------------ row 3


def test_pending_cancel_can_still_fill(server, tc):
    server.configure(async_cancel=True, fill_mode="manual", pending_cancel_fill_prob=1.0)
    o = tc.submit_order(limit("AAPL", 10, 200.0))              # marketable, not yet filled
    tc.cancel_order_by_id(o.id)
    assert tc.get_order_by_id(o.id).status == OrderStatus.PENDING_CANCEL
    e = refused(tc.cancel_order_by_id, o.id)                    # a second cancel is refused
    assert e.status_code == 422
    server.process_orders()
    got = tc.get_order_by_id(o.id)
    assert got.status == OrderStatus.FILLED and got.filled_qty == "10"
    assert tc.get_open_position("AAPL").qty == "10"
    # an order that cannot fill now (limit not crossed) still ends canceled
    o2 = tc.submit_order(limit("MSFT", 1, 100.0))
    tc.cancel_order_by_id(o2.id)
    server.process_orders()
    assert tc.get_order_by_id(o2.id).status == OrderStatus.CANCELED


def test_pending_cancel_can_fill_in_part_then_cancel(server, tc):
    server.configure(async_cancel=True, fill_mode="manual", pending_cancel_fill_prob=1.0,
                     pending_cancel_fill_fraction=0.5)
    o = tc.submit_order(limit("AAPL", 9, 200.0))
    tc.cancel_order_by_id(o.id)
    server.process_orders()
    got = tc.get_order_by_id(o.id)
    assert got.status == OrderStatus.CANCELED and got.filled_qty == "4"
    assert tc.get_open_position("AAPL").qty == "4"


def test_cancel_races_are_random_but_seeded(server, tc):
    server.configure(async_cancel=True, fill_mode="manual", pending_cancel_fill_prob=0.5, race_seed=7)
    outcomes = []
    for i in range(20):
        o = tc.submit_order(limit("AAPL", 1, 200.0, cid=f"p-race-{i}"))
        tc.cancel_order_by_id(o.id)
        server.process_orders()
        outcomes.append(tc.get_order_by_id(o.id).status)
    filled = outcomes.count(OrderStatus.FILLED)
    assert set(outcomes) == {OrderStatus.FILLED, OrderStatus.CANCELED}
    assert server.position_qty("AAPL") == filled


# ------------------------------------------------------------------------------------------ row 4


def test_crypto_fee_is_taken_in_the_coin_and_posted_as_cfee(server, tc):
    o = tc.submit_order(market("BTC/USD", 0.01, tif="gtc"))
    got = tc.get_order_by_id(o.id)
    assert got.filled_qty == "0.01"                                          # the order shows the gross qty
    assert tc.get_open_position("BTC/USD").qty == "0.009975"                # 25 bps kept in BTC
    fills = tc.get("/account/activities", {"activity_types": "FILL"})
    assert len(fills) == 1 and "fee" not in fills[0] and fills[0]["qty"] == "0.01"
    assert tc.get("/account/activities", {"activity_types": "CFEE"}) == []  # posted end of day
    server.new_day()
    (cfee,) = tc.get("/account/activities/CFEE")
    assert cfee["symbol"] == "BTCUSD" and cfee["qty"] == "-0.000025" and cfee["net_amount"] == "0"
    # a full close leaves nothing behind
    close = tc.close_position("BTC/USD")
    assert tc.get_order_by_id(close.id).status == OrderStatus.FILLED
    assert server.position_qty("BTC/USD") == 0.0 and tc.get_all_positions() == []


def test_crypto_fee_follows_the_volume_tier(server, tc):
    server.configure(crypto_fee_tier=3)                                      # 20 bps
    tc.submit_order(market("BTC/USD", 0.01, tif="gtc"))
    tc.get_orders()
    assert tc.get_open_position("BTC/USD").qty == "0.00998"
    with pytest.raises(ValueError):
        server.configure(crypto_fee_tier=9)


# ------------------------------------------------------------------------------------------ row 6


def test_replaced_and_done_for_day_are_not_final(server, tc):
    o = tc.submit_order(limit("AAPL", 10, 100.0, tif="gtc", cid="p-b1-AAPL-0"))
    new = server.venue_replace(o.id, qty=20, limit_price=50.0)              # e.g. a 2:1 split
    old = tc.get_order_by_id(o.id)
    assert old.status == OrderStatus.REPLACED and str(old.replaced_by) == new["id"]
    got = tc.get_order_by_id(new["id"])
    assert str(got.replaces) == str(o.id) and got.qty == "20" and got.limit_price == "50"
    server.set_done_for_day(new["id"])
    assert tc.get_order_by_id(new["id"]).status == OrderStatus.DONE_FOR_DAY
    server.set_price("AAPL", 40.0)
    tc.get_order_by_id(new["id"])
    assert tc.get_order_by_id(new["id"]).filled_qty == "0"                  # no updates until the next day
    server.new_day()
    assert tc.get_order_by_id(new["id"]).status == OrderStatus.FILLED       # resumed and crossed


# ------------------------------------------------------------------------------------------ row 5


def test_fill_corrections_and_busts_are_new_activities(server, tc):
    o = tc.submit_order(market("AAPL", 10))
    tc.get_order_by_id(o.id)
    (fill,) = tc.get("/account/activities/FILL")
    cash = float(tc.get_account().cash)
    corr = server.correct_fill(fill["id"], price=189.0)
    assert float(tc.get_account().cash) == pytest.approx(cash + 10.0)
    assert tc.get_order_by_id(o.id).filled_avg_price == "189"
    server.bust_fill(corr["id"])
    assert tc.get_all_positions() == [] and float(tc.get_account().cash) == pytest.approx(100_000.0)
    rows = tc.get("/account/activities/FILL", {"direction": "asc"})
    assert [r["type"] for r in rows] == ["fill", "trade_correct", "trade_bust"]
    assert len({r["id"] for r in rows}) == 3 and rows[1]["corrects"] == fill["id"]


# ------------------------------------------------------------------------------------------ row 16


def test_equity_orders_queue_while_closed_and_extended_hours_rules(server, tc):
    server.set_market_open(False)
    o = tc.submit_order(market("AAPL", 1))
    for _ in range(3):
        tc.get_order_by_id(o.id)
    assert tc.get_order_by_id(o.id).status == OrderStatus.ACCEPTED           # queued for the open
    e = refused(tc.submit_order, MarketOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="day",
                                                    extended_hours=True))
    assert e.status_code == 422
    server.configure(extended_session=True)                                 # pre/post market
    ext = tc.submit_order(limit("MSFT", 1, 380.0, extended_hours=True))
    assert tc.get_order_by_id(ext.id).status == OrderStatus.FILLED
    assert tc.get_order_by_id(o.id).status == OrderStatus.ACCEPTED           # regular orders still wait
    server.set_market_open(True)
    assert tc.get_order_by_id(o.id).status == OrderStatus.FILLED
    assert tc.submit_order(market("BTC/USD", notional=50, tif="gtc")).status == OrderStatus.PENDING_NEW


# ------------------------------------------------------------------------------------------ rows 7 and 14


def test_inactive_assets_are_reported_and_refused(server, tc):
    server.set_asset("OLD", status="inactive", tradable=False, price=12.0)
    server.set_position("OLD", 5, 10.0)
    a = tc.get_asset("OLD")
    assert a.status == AssetStatus.INACTIVE and a.tradable is False
    assert tc.get_open_position("OLD").qty == "5"
    assert refused(tc.submit_order, market("OLD", 5, "sell")).status_code == 422


def test_a_new_enum_value_from_the_venue_breaks_the_sdk(server, tc):
    server.set_asset("NEWX", exchange="NEWEXCHANGE", price=5.0)
    with pytest.raises(ValidationError):
        tc.get_all_assets()


def test_new_values_in_orders_positions_and_the_account_break_the_sdk_too(server, tc):
    server.set_asset("NEWX", exchange="NEWEXCHANGE", asset_class="us_equity_next", price=5.0)
    server.set_position("NEWX", 3, 5.0)
    with pytest.raises(ValidationError):
        tc.get_all_positions()
    server.set_account(status="UNDER_NEW_REVIEW")
    with pytest.raises(ValidationError):
        tc.get_account()
    server.set_account(status="ACTIVE")
    placed = tc.submit_order(limit("AAPL", 1, 1.0, cid="p-row14-AAPL-0"))
    for values in ({"order_status": {"accepted": "queued_next", "new": "queued_next"}},
                   {"order_class": "simple_next"}, {"order_type": "limit_next"}):
        server.set_new_values(**values)
        with pytest.raises(ValidationError):
            tc.get_order_by_id(placed.id)
    server.set_new_values()                                   # back to the values the SDK knows
    assert tc.get_order_by_id(placed.id).client_order_id == "p-row14-AAPL-0"


# ------------------------------------------------------------------------------------------ standalone


def test_switches_work_on_a_standalone_server(tmp_path):
    with AlpacaServerProcess(config={"key": KEY, "secret": SECRET}) as proc:
        ctl = proc.control
        tc = TradingClient(KEY, SECRET, paper=True, url_override=proc.url)
        tc._retry = 0
        ctl.set_account(trade_suspended_by_user=True)
        e = refused(tc.submit_order, market("AAPL", 1))
        assert e.message == "new orders are rejected by user request"
        ctl.set_account(trade_suspended_by_user=False)
        ctl.set_position("AAPL", 10, 150.0)
        ctl.add_user_order("AAPL", "sell", qty=4, type="limit", limit_price=300.0)
        assert tc.get_open_position("AAPL").qty_available == "6"
        ctl.configure(crypto_fee_tier=8)
        tc.submit_order(StopOrderRequest(symbol="AAPL", qty=2, side="sell", time_in_force="gtc",
                                         stop_price=100))
        assert len(tc.get_orders()) == 2
