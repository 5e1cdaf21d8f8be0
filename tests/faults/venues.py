"""The two local venues as the fault tests use them: an in-thread server, a settings file, a .env
with the keys, a signal file, and what the server holds afterwards (orders, fills, positions) in
one shape for both venues, so the checks in ``checks.py`` are venue-neutral."""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

from tests.servers.alpaca_server import AlpacaServer
from tests.servers.coinbase_server import CoinbaseServer

# added to every parity process: fast polls; PARITY_FAULT_PROFILE=1 prints a cProfile of each run
ENV = {"PARITY_POLL_INTERVAL": "0.02"}
if os.environ.get("PARITY_FAULT_PROFILE"):
    ENV["PARITY_FAULT_PROFILE"] = "1"


@dataclass
class ServerOrder:
    client_order_id: str
    order_id: str
    symbol: str
    side: str          # buy | sell
    status: str
    filled_qty: float


@dataclass
class ServerFill:
    order_id: str
    trade_id: str | None
    qty: float
    price: float


def now_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_signals(path: Path, weights: dict[str, float], stamp: str | None = None) -> Path:
    t = stamp or now_stamp()
    rows = ["symbol,time,side,weight,confidence"]
    for s, w in weights.items():
        rows.append(f"{s},{t},{1 if w > 0 else 0},{abs(w):.6f},0.9")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_strategy(root: Path, extra: str = "") -> None:
    (root / "strategies").mkdir(parents=True, exist_ok=True)
    (root / "strategies" / "default.yaml").write_text(
        "name: default\nrebalance:\n  drift_threshold: 0.0\n  order_timeout_s: 10\n" + extra)


class AlpacaVenue:
    """Alpaca paper on the local server (plain HTTP, alpaca-py)."""

    name = "alpaca"
    symbols = {"AAPL": 190.0, "MSFT": 370.0, "SPY": 470.0, "IBM": 160.0, "BAC": 34.0, "AIG": 68.0}
    whole_shares = {"IBM", "BAC"}          # not fractionable: increments of one share
    post_path = "/v2/orders"

    def __init__(self, root: Path, *, cash: float = 100_000.0, settings_extra: str = "", **server_kw):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        server_kw.setdefault("crypto_fee_bps", 0.0)
        self.srv = AlpacaServer(cash=cash, prices=dict(self.symbols), **server_kw).start()
        for s in self.whole_shares:
            self.srv.set_asset(s, fractionable=False)
        (root / ".env").write_text("ALPACA_PAPER_KEY=test-key\nALPACA_PAPER_SECRET=test-secret\n")
        self.settings = root / "settings.yaml"
        self.settings.write_text(
            "execution:\n  alpaca:\n    paper_api_key: ${ALPACA_PAPER_KEY}\n    paper_api_secret: ${ALPACA_PAPER_SECRET}\n"
            f"    base_url: {self.srv.url}\n    data_url: {self.srv.url}\n    timeout_s: 5\n{settings_extra}"
            f"ledger: {root / 'data' / 'parity.db'}\ndata_dir: {root / 'data'}/\nreports_dir: {root / 'reports'}/\n")
        self.ledger = root / "data" / "parity.db"

    def close(self) -> None:
        self.srv.stop()

    def increment(self, symbol: str) -> float:
        return 1.0 if symbol in self.whole_shares else 1e-9

    def hold(self, symbol: str, qty: float) -> None:
        self.srv.set_position(symbol, qty)

    def execute_args(self, signals: Path, *extra: str) -> list[str]:
        return ["--config", str(self.settings), "execute", "--signals", str(signals), "--paper", *extra]

    def inject(self, kind: str, *, method: str | None, path: str, pid: int | None = None, skip: int = 0,
               arm: dict | None = None, count: int = 1, seconds: float = 0.0, exact: bool = False) -> None:
        self.srv.inject(kind, path_prefix=path, method=method, count=count, seconds=seconds, pid=pid, skip=skip,
                        arm=arm)

    def clear_faults(self) -> None:
        self.srv.clear_faults()

    def kills(self) -> list[dict]:
        return self.srv.kills()

    def orders(self) -> list[ServerOrder]:
        return [ServerOrder(o["client_order_id"], o["id"], o["symbol"], o["side"], o["status"],
                            float(o["filled_qty"] or 0)) for o in self.srv.orders_submitted()]

    def fills(self) -> list[ServerFill]:
        return [ServerFill(f["order_id"], None, float(f["qty"]), float(f["price"])) for f in self.srv.fills()]

    def positions(self) -> dict[str, float]:
        out = {}
        for p in self.srv.positions().values():
            sym = p["symbol"]
            out[sym if sym in self.symbols else sym[:-3] + "/" + sym[-3:]] = float(p["qty"])
        return out

    def n_posts(self) -> int:
        return sum(1 for r in self.srv.get_requests() if r[0] == "POST" and r[1] == "/v2/orders")

    def statuses(self) -> list[int | None]:
        """The HTTP status of the server's answer to each request (None: no answer)."""
        return self.srv.get_statuses()


class CoinbaseVenue:
    """Coinbase Advanced Trade on the local HTTPS server (coinbase-advanced-py), ``--live --yes``."""

    name = "coinbase"
    products = {"BTC-USD": ("0.00000001", 50_000.0), "ETH-USD": ("0.00000001", 3_000.0),
                "SOL-USD": ("0.001", 150.0), "DOGE-USD": ("0.1", 0.2)}
    post_path = "/api/v3/brokerage/orders"

    def __init__(self, root: Path, *, cash: float = 100_000.0, settings_extra: str = "", balances=None,
                 rate: int = 30, **server_kw):
        """``rate``: private requests per second, for the server's limit and the client's limiter alike."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        server_kw.setdefault("fee_rate", 0.0)
        server_kw.setdefault("maker_fee_rate", 0.0)
        server_kw.setdefault("private_rate_limit", rate)
        products = {p: {"base_increment": inc, "base_min_size": inc, "quote_min_size": "1",
                        "base_max_size": "100000000"} for p, (inc, _) in self.products.items()}
        prices = {p: px for p, (_, px) in self.products.items()}
        self.srv = CoinbaseServer(cash_usd=cash, balances=balances or {}, prices=prices, products=products,
                                  cert_dir=str(root / "tls"), **server_kw).start()
        key = self.srv.key()
        pem = key.private_pem.strip().replace("\n", "\\n")
        (root / ".env").write_text(f'COINBASE_API_KEY={key.name}\nCOINBASE_API_SECRET="{pem}"\n')
        self.settings = root / "settings.yaml"
        self.settings.write_text(
            "execution:\n  coinbase:\n    enabled: true\n    api_key: ${COINBASE_API_KEY}\n"
            "    api_secret: ${COINBASE_API_SECRET}\n"
            f"    base_url: {self.srv.base_url}\n    ca_bundle: {self.srv.cert_path}\n    timeout_s: 5\n"
            f"    requests_per_second: {rate}\n{settings_extra}"
            f"ledger: {root / 'data' / 'parity.db'}\ndata_dir: {root / 'data'}/\nreports_dir: {root / 'reports'}/\n")
        self.ledger = root / "data" / "parity.db"

    @property
    def symbols(self) -> dict[str, float]:
        return {p.replace("-", "/"): px for p, (_, px) in self.products.items()}

    def close(self) -> None:
        self.srv.stop()

    def increment(self, symbol: str) -> float:
        return float(self.products[symbol.replace("/", "-")][0])

    def hold(self, symbol: str, qty: float) -> None:
        inc = self.increment(symbol)
        q = math.floor(qty / inc + 1e-9) * inc
        self.srv.set_balance(symbol.split("/")[0], f"{q:.10f}")

    def execute_args(self, signals: Path, *extra: str) -> list[str]:
        return ["--config", str(self.settings), "execute", "--signals", str(signals), "--broker", "coinbase",
                "--live", "--yes", *extra]

    def inject(self, kind: str, *, method: str | None, path: str, pid: int | None = None, skip: int = 0,
               arm: dict | None = None, count: int | None = 1, seconds: float = 0.0, exact: bool = False) -> None:
        """``path`` relative to the API (``/orders``); ``exact`` matches it exactly, else as a prefix."""
        where = {"path": path} if exact else {"path_prefix": path}
        return self.srv.inject(kind, method=method, count=count, seconds=seconds or 1.0, pid=pid, skip=skip, arm=arm,
                        **where)

    def clear_faults(self) -> None:
        self.srv.clear_injections()

    def kills(self) -> list[dict]:
        return self.srv.kills()

    def orders(self) -> list[ServerOrder]:
        return [ServerOrder(o["client_order_id"], o["order_id"], o["product_id"].replace("-", "/"),
                            o["side"].lower(), o["status"], float(o["filled_size"])) for o in self.srv.orders()]

    def fills(self) -> list[ServerFill]:
        return [ServerFill(f["order_id"], f["trade_id"], float(f["size"]), float(f["price"])) for f in self.srv.fills()]

    def positions(self) -> dict[str, float]:
        out = {}
        for cur, (avail, hold) in self.srv.balances().items():
            if cur != "USD" and avail + hold != 0:
                out[f"{cur}/USD"] = avail + hold
        return out

    def n_posts(self) -> int:
        return sum(1 for r in self.srv.requests if r.method == "POST" and r.path == self.post_path)

    def statuses(self) -> list[int | None]:
        """The HTTP status of the server's answer to each request (None: no answer)."""
        return [r.status for r in self.srv.requests]
