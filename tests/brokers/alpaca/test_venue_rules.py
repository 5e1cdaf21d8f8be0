"""AlpacaBroker and the planner against Alpaca as it really is (issue 12, catalogue rows 3-13), through
the real alpaca-py SDK and the local server with each behaviour switched on (the switches and their
sources: docs/venue_behaviours_confirmed.md). What the venue would refuse is held, clipped or
dropped with a risk decision before anything is sent; fees in the coin keep the ledger equal to the
venue; corrections and busts are adjusting rows; cancels that race with fills never over-trade."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.live import LiveOptions, OrderRequest
from brokers.retry import RetryPolicy
from framework.accounts import Account, Environment
from framework.config import RebalanceSettings, RiskLimits
from framework.costs import VenueFees
from framework.engine import Pipeline, plan_cycle, run_cycle
from framework.journal import BufferedJournal, WriteAheadJournal
from framework.order_ids import batch_key, client_order_id
from framework.rebalance import Rebalancer
from framework.risk import RiskManager
from framework.types import OrderStatus, TargetPortfolio
from framework.venue_checks import AccountBlocked
from framework.venue_config import load_venue
from tests.servers.alpaca_server import AlpacaServer, make_asset

KEY, SECRET = "PKRULESKEY01", "SKRULESSECRET01"
RACE_RUNS = int(os.environ.get("PARITY_RACE_RUNS", "200"))
LIMITS = RiskLimits(min_account_balance=0.0, max_position_size_pct=1.0, max_exposure_pct=1.0, max_positions=50)


def make_broker(srv: AlpacaServer, *, order_timeout_s: float = 1.0, poll: float = 0.01, fees=None,
                rpm: int = 200) -> AlpacaBroker:
    return AlpacaBroker(AlpacaEndpoints(KEY, SECRET, True, srv.url, srv.url, timeout=5.0),
                        retry=RetryPolicy(attempts=4, base=0.01, cap=0.05), fees=fees, requests_per_minute=rpm,
                        options=LiveOptions(order_timeout_s=order_timeout_s, poll_interval_s=poll))


def server(**kw) -> AlpacaServer:
    kw.setdefault("rate_limit", None)
    kw.setdefault("data_rate_limit", None)
    return AlpacaServer(key=KEY, secret=SECRET, **kw)


_seq = [0]


def target(u, weights: dict[str, float], tag: str = "rules") -> TargetPortfolio:
    _seq[0] += 1
    t = np.datetime64(time.time_ns(), "ns") + np.timedelta64(_seq[0], "s")
    w = np.array([weights.get(s, np.nan) for s in u.symbols], float)
    return TargetPortfolio(t, batch_key(tag, t), w, np.where(np.isnan(w), np.nan, 0.9))


def pipeline(broker, symbols, *, execution: str = "market", unfilled: str = "cancel", journal=None,
             drift: float = 0.0, reprices: int = 3, offset_bps: float = 10.0) -> Pipeline:
    u = broker.instruments(symbols)
    return Pipeline(broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=drift)),
                    journal or BufferedJournal("t"), u, unfilled, execution, reprices, offset_bps)


def rules(cp) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in cp.plan.skipped:
        out.setdefault(d.symbol, []).append(d.rule)
    return out


def planned(cp) -> dict[str, float]:
    out = {}
    for leg in (cp.plan.reduce, cp.plan.add):
        for s, sd, q in zip(leg.symbols(), leg.side.tolist(), leg.qty.tolist()):
            out[s] = out.get(s, 0.0) + sd * q
    return out


# ------------------------------------------------------------------ tradability, account, shorts, floors

def test_an_inactive_asset_is_held_with_the_reason_and_the_others_trade():
    """Row 7a: the delisted symbol is held with a decision naming why; the rest of the batch trades."""
    with server() as srv:
        srv.set_asset("MSFT", status="inactive", tradable=False)
        p = pipeline(make_broker(srv), ["AAPL", "MSFT"])
        cp = plan_cycle(p, target(p.universe, {"AAPL": 0.1, "MSFT": 0.1}))
        assert "MSFT" not in planned(cp) and planned(cp)["AAPL"] > 0
        held = [d for d in cp.risk.decisions + cp.plan.skipped if d.symbol == "MSFT"]
        assert held and held[0].rule == "venue_halt" and "inactive" in held[0].reason
        run_cycle(p, target(p.universe, {"AAPL": 0.1, "MSFT": 0.1}))
        assert srv.position_qty("AAPL") > 0 and srv.count_orders(symbol="MSFT") == 0


def test_an_account_that_may_not_trade_crypto_holds_its_crypto_and_trades_the_rest():
    """Row 13, crypto_status: an account whose crypto trading is not enabled (a status other than
    ACTIVE, or none: alpaca-py reports it only where crypto is enabled) has each crypto order refused
    by the venue (403). Parity holds the crypto symbols with the reason (venue_halt), sends no crypto
    order, and the equities trade with the whole budget."""
    for status, said in (("INACTIVE", "crypto_status INACTIVE"), (None, "crypto_status absent")):
        with server() as srv:
            srv.set_price("BTC/USD", 50_000.0)
            srv.set_account(crypto_status=status)
            p = pipeline(make_broker(srv), ["AAPL", "BTC/USD"])
            cp = plan_cycle(p, target(p.universe, {"AAPL": 0.1, "BTC/USD": 0.1}))
            held = [d for d in cp.risk.decisions + cp.plan.skipped if d.symbol == "BTC/USD"]
            assert held and held[0].rule == "venue_halt" and said in held[0].reason
            run_cycle(p, target(p.universe, {"AAPL": 0.1, "BTC/USD": 0.1}))
            assert srv.position_qty("AAPL") > 0 and srv.count_orders(symbol="BTC/USD") == 0
    with server() as srv:                      # enabled: the crypto trades
        srv.set_price("BTC/USD", 50_000.0)
        p = pipeline(make_broker(srv), ["AAPL", "BTC/USD"])
        run_cycle(p, target(p.universe, {"AAPL": 0.1, "BTC/USD": 0.1}))
        assert srv.count_orders(symbol="BTC/USD") == 1


def test_a_blocked_account_is_one_clear_error_before_anything_is_sent():
    """Row 13: trading_blocked / account_blocked / trade_suspended_by_user -> one error, no order."""
    for flag in ("trading_blocked", "account_blocked", "trade_suspended_by_user"):
        with server() as srv:
            srv.set_account(**{flag: True})
            p = pipeline(make_broker(srv), ["AAPL"])
            with pytest.raises(AccountBlocked) as e:
                run_cycle(p, target(p.universe, {"AAPL": 0.1}))
            assert flag in str(e.value) and e.value.exit_code == 1
            assert srv.count_orders() == 0


def test_shorts_need_a_margin_account_and_whole_shares():
    """Row 8: a cash account sends no short (decision instead of a 403); a margin account shorts in
    whole shares only."""
    with server() as srv:                                   # default: cash account (multiplier 1)
        p = pipeline(make_broker(srv), ["AAPL"])
        cp = plan_cycle(p, target(p.universe, {"AAPL": -0.1}))
        assert planned(cp) == {} and rules(cp) == {"AAPL": ["short_not_allowed"]}
    with server(allow_short=True) as srv:
        p = pipeline(make_broker(srv), ["AAPL"])
        res = run_cycle(p, target(p.universe, {"AAPL": -0.1}))     # 10,000 / 190 = 52.6 -> 52 shares
        assert "fractional_short" in rules(res.plan)["AAPL"]
        assert srv.position_qty("AAPL") == -52.0
        assert all(int(s) != int(OrderStatus.REJECTED) for r in res.reports for s in r.status)


def test_crypto_buys_under_ten_dollars_are_not_sent_but_small_sells_are():
    """Row 10: the $10 cost-basis floor applies to USD-quoted crypto buys only."""
    with server(crypto_fee_bps=0.0) as srv:
        p = pipeline(make_broker(srv), ["BTC/USD"])
        cp = plan_cycle(p, target(p.universe, {"BTC/USD": 0.00005}))     # $5
        assert planned(cp) == {} and rules(cp) == {"BTC/USD": ["min_buy_notional"]}
        srv.set_position("BTC/USD", 0.0002, 45_000.0)                     # $9 held
        res = run_cycle(p, target(p.universe, {"BTC/USD": 0.0}))
        assert srv.position_qty("BTC/USD") == 0.0
        assert res.reports[0].status.tolist() == [int(OrderStatus.FILLED)]


# ------------------------------------------------------------------ the user's orders

def test_quantity_held_by_the_users_open_sell_is_not_sold_again():
    """Row 12: 60 of 100 shares are held by the user's resting sell; a full exit sells the 40 left."""
    with server() as srv:
        srv.set_position("AAPL", 100, 180.0)
        srv.add_user_order("AAPL", "sell", qty=60, type="limit", limit_price=500.0)
        p = pipeline(make_broker(srv), ["AAPL"])
        res = run_cycle(p, target(p.universe, {"AAPL": 0.0}))
        assert rules(res.plan) == {"AAPL": ["qty_available"]}
        assert srv.position_qty("AAPL") == 60.0
        assert len(p.broker.foreign_orders()) == 1, "the user's order is untouched"


def test_an_opposite_user_order_holds_the_trade_with_a_decision_naming_it():
    """Row 11: the venue refuses an order opposite to an open one; the user's is never cancelled, so
    Parity's trade is held, naming it."""
    with server() as srv:
        srv.set_position("AAPL", 10, 180.0)
        user = srv.add_user_order("AAPL", "sell", qty=5, type="stop", stop_price=150.0)
        p = pipeline(make_broker(srv), ["AAPL"])
        res = run_cycle(p, target(p.universe, {"AAPL": 0.2}))
        held = [d for d in res.plan.plan.skipped if d.rule == "wash_trade"]
        assert held and user["client_order_id"] in held[0].reason
        assert srv.count_orders(symbol="AAPL") == 1
        assert srv.get_order(user["id"])["status"] in ("new", "accepted")


def test_an_opposite_owned_order_is_cancelled_and_waited_for_before_the_trade():
    """Row 11 with ``unfilled: carry``: Parity's own resting buy would make the venue refuse the sell;
    it is cancelled first, to a final state, then the sell goes through."""
    with server() as srv:
        srv.set_position("AAPL", 50, 180.0)
        broker = make_broker(srv)
        cid = client_order_id(batch_key("older", np.datetime64("2024-01-01T00:00:00")), "AAPL", "add")
        broker._submit(OrderRequest(cid, "AAPL", 1, 5, "limit", 100.0))
        p = pipeline(broker, ["AAPL"], unfilled="carry")
        res = run_cycle(p, target(p.universe, {"AAPL": 0.0}))
        assert srv.get_order(cid)["status"] == "canceled"
        assert srv.position_qty("AAPL") == 0.0
        assert all(int(s) == int(OrderStatus.FILLED) for r in res.reports for s in r.status)


# ------------------------------------------------------------------ fees in kind, corrections, replaced

def _ledger_journal(tmp_path, broker):
    from framework.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.db")
    acct = Account("alpaca", Environment.PAPER, "test")
    ledger.start_run("r1", "t", "", "paper", "alpaca", 100_000.0, ("BTC/USD", "AAPL"), {})
    return ledger, acct, WriteAheadJournal(ledger, "r1", acct)


def test_crypto_fee_in_the_coin_keeps_the_ledger_equal_to_the_venue_and_a_full_close_leaves_nothing(tmp_path):
    """Row 4: a BTC buy receives the coin minus 25 bps; the fill books that reduction (and its value
    as the fee), so reconcile finds no difference; closing the venue's position leaves zero."""
    from framework.recovery import position_differences

    fees = VenueFees.from_venue(load_venue("alpaca"))
    with server(crypto_fee_bps=25.0) as srv:
        broker = make_broker(srv, fees=fees)
        ledger, acct, j = _ledger_journal(tmp_path, broker)
        try:
            p = pipeline(broker, ["BTC/USD"], journal=j)
            run_cycle(p, target(p.universe, {"BTC/USD": 0.1}))
            venue = srv.position_qty("BTC/USD")
            assert venue == pytest.approx(10_000 / 45_000 * (1 - 0.0025), rel=1e-6)
            assert ledger.positions(acct.key)["BTC/USD"] == pytest.approx(venue, abs=1e-9)
            fee = ledger.db.execute("SELECT fee, fee_qty, price FROM fills").fetchone()
            assert fee[0] == pytest.approx(fee[1] * fee[2]) and fee[1] > 0
            assert position_differences(ledger, acct, "alpaca", broker.positions()) == []
            run_cycle(p, target(p.universe, {"BTC/USD": 0.0}))
            assert srv.position_qty("BTC/USD") == 0.0
            assert position_differences(ledger, acct, "alpaca", broker.positions()) == []
            assert abs(ledger.positions(acct.key).get("BTC/USD", 0.0)) < 1e-9
        finally:
            ledger.close()


def test_fill_corrections_and_busts_are_booked_as_adjusting_rows(tmp_path):
    """Row 5b: trade_correct / trade_bust activities are booked under ids of their own (the original
    stays), and the ledger's position follows the venue's."""
    with server(crypto_fee_bps=0.0) as srv:
        broker = make_broker(srv)
        ledger, acct, j = _ledger_journal(tmp_path, broker)
        try:
            p = pipeline(broker, ["AAPL"], journal=j)
            res = run_cycle(p, target(p.universe, {"AAPL": 0.019}))      # 1,900 / 190 = 10 shares
            assert srv.position_qty("AAPL") == 10.0
            rep = res.reports[-1]
            act = rep.fills.trade_ids[0]
            srv.correct_fill(act, qty=8)
            state = broker.lookup(rep.batch.client_order_ids())[rep.batch.client_order_ids()[0]]
            j.update(broker.resume(rep.batch, [state]))
            assert ledger.positions(acct.key)["AAPL"] == pytest.approx(srv.position_qty("AAPL")) == 8.0
            fills = {f["id"]: f for f in srv.fills() if f.get("type") == "trade_correct"}
            srv.bust_fill(next(iter(fills)))
            state = broker.lookup(rep.batch.client_order_ids())[rep.batch.client_order_ids()[0]]
            j.update(broker.resume(rep.batch, [state]))
            j.update(broker.resume(rep.batch, [state]))          # reported again: booked once
            assert srv.position_qty("AAPL") == 0.0
            assert abs(ledger.positions(acct.key).get("AAPL", 0.0)) < 1e-9
            n = ledger.db.execute("SELECT COUNT(*), COUNT(DISTINCT trade_id) FROM fills").fetchone()
            assert n[0] == n[1] >= 4
        finally:
            ledger.close()


def test_replaced_is_followed_to_the_replacement_and_done_for_day_is_not_final():
    """Row 6: a venue-side replace is not a final cancel: the state follows the replacement order;
    done_for_day keeps the order working."""
    with server(fill_mode="manual") as srv:
        broker = make_broker(srv)
        cid = client_order_id(batch_key("rep", np.datetime64("2024-01-01T00:00:00")), "AAPL", "add")
        st = broker._submit(OrderRequest(cid, "AAPL", 1, 10, "limit", 100.0))
        new = srv.venue_replace(cid, qty=12)
        got = broker._get(st)
        assert got.status in (int(OrderStatus.NEW), int(OrderStatus.PARTIAL))
        assert got.broker_id == str(new["id"]) and got.client_order_id == cid and got.qty == 12
        srv.set_done_for_day(str(new["id"]))
        assert broker._get(got).status == int(OrderStatus.NEW)


# ------------------------------------------------------------------ prices: increments and fallback

def test_a_sub_dollar_stock_trades_with_four_decimal_limits():
    """Row 9: below $1 limits take four decimals; the smart ladder's limits sit on them and fill."""
    penny = make_asset("PENY", fractionable=True)
    with server(assets=[penny], prices={"PENY": 0.51237}) as srv:
        p = pipeline(make_broker(srv), ["PENY"], execution="smart")
        res = run_cycle(p, target(p.universe, {"PENY": 0.01}))
        first = next(r for r in res.reports if len(r.batch))
        assert first.batch.order_type == "limit" and first.status.tolist() == [int(OrderStatus.FILLED)]
        limit = float(first.batch.limit_price[0])
        assert limit == round(limit, 4) and limit > 0.51237
        assert srv.position_qty("PENY") > 0


def test_a_limit_refused_for_its_price_goes_at_market_next():
    """Row 9 (crypto): the venue's increment changed after the universe was read; the refused limit is
    followed by a market order, not dropped for the cycle."""
    with server(crypto_fee_bps=0.0, enforce_crypto_price_increment=True) as srv:
        p = pipeline(make_broker(srv), ["BTC/USD"], execution="smart", offset_bps=7.0)
        srv.set_asset("BTC/USD", price_increment="5")
        res = run_cycle(p, target(p.universe, {"BTC/USD": 0.1}))
        reps = [r for r in res.reports if len(r.batch)]
        assert reps[0].status.tolist() == [int(OrderStatus.REJECTED)] and "increment" in reps[0].messages[0]
        assert reps[1].batch.order_type == "market" and reps[1].batch.leg.endswith("-m")
        assert reps[1].status.tolist() == [int(OrderStatus.FILLED)]
        assert srv.position_qty("BTC/USD") == pytest.approx(10_000 / 45_000, abs=1e-8)


# ------------------------------------------------------------------ cancels that race with fills

def test_smart_execution_never_ends_above_the_target_when_cancels_race_with_fills():
    """Row 3: 200 randomized runs; every limit is left working past the timeout, its cancel goes
    pending and may still fill (in full or in part) before it is final. The position never ends above
    the target, because each step is sized from the final filled quantity."""
    rng = np.random.default_rng(12)
    over = []
    with server(fill_mode="poll", fill_after_polls=3, async_cancel=True) as srv:
        # the client-side limiter at Alpaca's 200/min would make 200 cycles take an hour; the server's is off
        broker = make_broker(srv, order_timeout_s=0.005, poll=0.002, rpm=1_000_000)
        p = pipeline(broker, ["AAPL"], execution="smart", reprices=2)
        for run in range(RACE_RUNS):
            srv.set_position("AAPL", 0.0)
            srv.set_cash(100_000.0)
            frac = [None, 0.3, 0.5, 0.9][run % 4]
            srv.configure(race_seed=run, pending_cancel_fill_prob=float(rng.uniform(0.2, 1.0)),
                          pending_cancel_fill_fraction=frac)
            w = float(rng.uniform(0.01, 0.2))
            t = target(p.universe, {"AAPL": w}, tag=f"race{run}")
            want = np.floor(w * float(broker.account().equity) / 190.0 * 1e9) / 1e9
            run_cycle(p, t)
            got = srv.position_qty("AAPL")
            if got > want + 1e-6:
                over.append((run, want, got))
    assert over == [], over
    raced = [o for o in srv.orders_submitted() if o["status"] == "canceled" and float(o["filled_qty"]) > 0]
    assert len(raced) > RACE_RUNS // 10, "cancels did race with fills"
