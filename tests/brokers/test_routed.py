"""Broker routing: one target portfolio split across Alpaca (equities) and Coinbase (crypto).

Risk is checked on the combined portfolio; each venue's buys are re-sized to that venue's own
buying power (cash at Coinbase cannot pay for shares at Alpaca); each venue's account is reported.
"""

from __future__ import annotations

import numpy as np

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.coinbase.broker import CoinbaseBroker
from brokers.coinbase.client import CoinbaseEndpoints
from brokers.live import LiveOptions
from brokers.retry import RetryPolicy
from brokers.routed import RoutedBroker
from framework.accounts import Account, Environment
from framework.config import RebalanceSettings, RiskLimits, StrategyConfig
from framework.engine import Pipeline, run_cycle
from framework.journal import WriteAheadJournal
from framework.ledger import Ledger
from framework.ledger.check import check_ledger
from framework.rebalance import Rebalancer
from framework.risk import RiskManager
from framework.types import TargetPortfolio
from tests.servers.alpaca_server import AlpacaServer
from tests.servers.coinbase_server import CoinbaseServer

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def test_one_target_split_across_alpaca_and_coinbase(tmp_path):
    strategy = StrategyConfig(name="mixed", routing={"equity": "alpaca", "crypto": "coinbase"})
    with AlpacaServer(key="k", secret="s", cash=100_000.0, rate_limit=None, data_rate_limit=None) as a_srv, \
            CoinbaseServer(cash_usd=20_000.0, private_rate_limit=None, fee_rate=0.0) as c_srv:
        a_srv.set_price("AAPL", 200.0)
        c_srv.set_price("BTC-USD", 50_000.0)
        fast = LiveOptions(poll_interval_s=0.01)
        alpaca = AlpacaBroker(AlpacaEndpoints("k", "s", True, a_srv.url, a_srv.url, 5.0), retry=FAST, options=fast)
        coinbase = CoinbaseBroker(CoinbaseEndpoints(c_srv.api_key_name, c_srv.private_key_pem, None, c_srv.base_url,
                                                    c_srv.cert_path, 5.0), retry=FAST, options=fast)
        limits = RiskLimits(max_position_size_pct=0.30, max_exposure_pct=0.95, max_positions=10, min_confidence=0.5,
                            max_daily_loss_pct=0.5, min_account_balance=0.0, max_leverage=1.0)
        settings = RebalanceSettings(drift_threshold=0.0, price_buffer_bps=0.0)
        rebalancer = Rebalancer(settings)
        broker = RoutedBroker({"alpaca": alpaca, "coinbase": coinbase}, strategy.broker_for, settings)
        u = broker.instruments(["AAPL", "BTC/USD"])
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("r", "mixed", strategy.config_hash(), "paper", broker.name, 120_000.0, u.symbols, {})
        p = Pipeline(broker, RiskManager(limits), rebalancer, WriteAheadJournal(ledger, "r", Account(broker.name, Environment.PAPER, "test")), u)
        t = np.datetime64("2026-11-21T15:00:00", "ns")
        # 40% in each: clipped to 30% of the COMBINED equity (120k) = 36k each
        res = run_cycle(p, TargetPortfolio(t, "mixed@20261121T150000Z", np.array([0.4, 0.4]), np.array([0.9, 0.9])))
        clipped = {d.symbol for d in res.plan.risk.decisions if d.rule == "max_position_size_pct"}
        assert clipped == {"AAPL", "BTC/USD"}
        assert abs(res.plan.account.equity - 120_000.0) < 1e-6
        # AAPL at Alpaca: 36k / 200 = 180 shares
        assert abs(a_srv.position_qty("AAPL") - 180.0) < 1e-6
        # BTC at Coinbase: 36k wanted but Coinbase holds only 20k cash: re-sized to its own buying power
        btc = c_srv.balances()["BTC"][0]
        assert 0.39 < btc <= 20_000.0 / 50_000.0 + 1e-12
        assert a_srv.count_orders(symbol="BTC/USD") == 0 and not c_srv.orders(product_id="AAPL-USD")
        accounts = broker.accounts()
        assert set(accounts) == {"alpaca", "coinbase"}
        assert accounts["alpaca"].equity > 99_000 and accounts["coinbase"].equity > 19_000
        assert check_ledger(ledger) == []


def test_paper_cycle_then_nightly_report_of_a_routed_strategy(tmp_path):
    import datetime as dt
    import json

    from tests.conftest import FAKE_SECRET, run_parity
    from tests.servers.certs import write_key_file

    # run_parity's environment carries the paper keys (FAKE_SECRET, FAKE_SECRET + "S")
    with AlpacaServer(key=FAKE_SECRET, secret=FAKE_SECRET + "S", cash=100_000.0, rate_limit=None,
                      data_rate_limit=None) as a_srv, \
            CoinbaseServer(cash_usd=50_000.0, private_rate_limit=None) as c_srv:
        a_srv.set_price("AAPL", 200.0)
        c_srv.set_price("BTC-USD", 50_000.0)
        key_file = tmp_path / "cdp_key.json"
        write_key_file(key_file, c_srv.key())
        cfg = tmp_path / "config"
        (cfg / "strategies").mkdir(parents=True)
        (cfg / "settings.yaml").write_text(
            "execution:\n"
            f"  alpaca: {{paper_api_key: ${{ALPACA_PAPER_KEY}}, paper_api_secret: ${{ALPACA_PAPER_SECRET}}, "
            f"base_url: \"{a_srv.url}\", data_url: \"{a_srv.url}\"}}\n"
            f"  coinbase: {{enabled: true, key_file: {key_file}, base_url: \"{c_srv.base_url}\", "
            f"ca_bundle: {c_srv.cert_path}}}\n"
            "ledger: data/parity.db\ndata_dir: data/\nreports_dir: reports/\n")
        (cfg / "strategies" / "mixed.yaml").write_text(
            "name: mixed\nstage: paper\nrouting: {equity: alpaca, crypto: coinbase}\n")
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        (tmp_path / "s.csv").write_text(f"symbol,time,side,weight,confidence\nAAPL,{now},1,0.2,0.8\n"
                                        f"BTC-USD,{now},1,0.2,0.9\n")
        p = run_parity("execute", "--signals", "s.csv", "--strategy", "mixed", "--paper", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert "SHADOW" in p.stdout and "alpaca: equity" in p.stdout and "coinbase: equity" in p.stdout
        assert a_srv.position_qty("AAPL") > 0          # equities at Alpaca paper
        assert not c_srv.orders()                      # crypto in shadow: nothing reached Coinbase
        day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
        n = run_parity("report", "nightly", "--date", day, cwd=tmp_path)
        assert n.returncode == 0, n.stdout + n.stderr
        index = json.loads((tmp_path / "reports" / "nightly" / day / "nightly.json").read_text())
        text = json.dumps(index)
        assert "mixed" in text and "alpaca+coinbase" in text
        assert "alpaca: equity" in text and "coinbase: equity" in text   # per venue beside the combined report
        assert (tmp_path / "reports" / "nightly" / day / "mixed" / "report.html").is_file()


def test_smart_execution_across_venues_starts_every_leg_with_a_limit_order(tmp_path):
    """Issue 11: RoutedBroker rebuilt each venue's batch without its order type and limit prices, so
    the first step of every smart buy went out as a MARKET order. Each venue now gets the batch as
    the engine made it: a marketable limit first, on the venue's price increment."""
    strategy = StrategyConfig(name="mixed", routing={"equity": "alpaca", "crypto": "coinbase"})
    with AlpacaServer(key="k", secret="s", cash=100_000.0, rate_limit=None, data_rate_limit=None,
                      fill_after_polls=10_000) as a_srv, \
            CoinbaseServer(cash_usd=100_000.0, private_rate_limit=None, fee_rate=0.0) as c_srv:
        a_srv.set_price("AAPL", 200.0)
        c_srv.set_price("BTC-USD", 50_000.0)
        fast = LiveOptions(order_timeout_s=0.3, poll_interval_s=0.01)
        alpaca = AlpacaBroker(AlpacaEndpoints("k", "s", True, a_srv.url, a_srv.url, 5.0), retry=FAST, options=fast)
        coinbase = CoinbaseBroker(CoinbaseEndpoints(c_srv.api_key_name, c_srv.private_key_pem, None, c_srv.base_url,
                                                    c_srv.cert_path, 5.0), retry=FAST, options=fast)
        limits = RiskLimits(max_position_size_pct=0.30, max_exposure_pct=0.95, max_positions=10, min_confidence=0.5,
                            max_daily_loss_pct=0.5, min_account_balance=0.0, max_leverage=1.0)
        settings = RebalanceSettings(drift_threshold=0.0, price_buffer_bps=0.0, execution="smart", smart_reprices=1)
        broker = RoutedBroker({"alpaca": alpaca, "coinbase": coinbase}, strategy.broker_for, settings)
        u = broker.instruments(["AAPL", "BTC/USD"])
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("r", "mixed", "", "paper", broker.name, 200_000.0, u.symbols, {})
        p = Pipeline(broker, RiskManager(limits), Rebalancer(settings),
                     WriteAheadJournal(ledger, "r", Account(broker.name, Environment.PAPER, "test")), u,
                     "cancel", "smart", 1, 10.0)
        t = np.datetime64("2026-11-21T15:00:00", "ns")
        run_cycle(p, TargetPortfolio(t, "mixed@20261121T150000Z", np.array([0.2, 0.2]), np.array([0.9, 0.9])))
        a_sent = a_srv.orders_submitted()
        c_sent = [o for o in c_srv.orders() if o.get("client_order_id", "").startswith("p-")]
        assert a_sent and c_sent
        assert a_sent[0]["type"] == "limit" and float(a_sent[0]["limit_price"]) == 200.2
        assert "limit_limit_gtc" in c_sent[0]["order_configuration"]     # oldest first
        assert [o["type"] for o in a_sent][-1] == "market"       # the ladder still ends at market
        assert check_ledger(ledger) == []
        ledger.close()
