"""Exceptions grouped by what the caller should do.

    ParityError
    ├── UsageError            stop; the user fixes the command or config        (exit 2)
    │   └── ConfigError       a config file is wrong: names file and key        (exit 2)
    ├── DataError             stop; an input file is wrong: names file/line/field (exit 2)
    ├── BrokerError           something at a venue went wrong                   (exit 1)
    │   ├── TransientBrokerError   retry with backoff (timeouts, 429, 5xx, dropped connections)
    │   ├── AuthenticationError    stop; credentials are missing or refused
    │   └── OrderRejected          record it, continue with the other orders
    │       └── InsufficientFunds  record it, continue (buying power, balance)
    ├── AccountBusy           stop; another process holds the account's lease     (exit 1)
    ├── LiveSafetyError       stop; a live gate refused (promotion, stale batch)  (exit 2)
    │   └── PromotionRefused  a promotion gate failed (framework.ops.promotion)  (exit 2)
    └── RiskHalt              the risk manager blocked the whole cycle          (exit 3)

Risk outcomes are values (RiskDecision), never exceptions. Broker SDK errors are translated into
this tree at the adapter boundary with ``raise ... from e``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ParityError(Exception):
    """Root of every error Parity raises on purpose."""

    exit_code = 1


class UsageError(ParityError):
    """Bad command line or configuration: stop, fix the input, nothing was sent."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad thing in an input file, located precisely."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" [{self.field}]"
        return f"{where}: {self.message}"


class DataError(ParityError):
    """Input data is invalid: stop; every problem names its file, line and field."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, field=None, message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the input:\n{shown}{more}")


class BrokerError(ParityError):
    """A venue did something we did not want; subclasses say what to do about it."""

    exit_code = 1


class TransientBrokerError(BrokerError):
    """Timeout, dropped connection, 429 or 5xx: safe to retry with backoff."""


class AuthenticationError(BrokerError):
    """Credentials missing, wrong or lacking scopes: stop."""


class OrderRejected(BrokerError):
    """The venue refused one order: record it and continue with the rest."""

    def __init__(self, message: str, *, client_order_id: str | None = None, code: str | None = None):
        super().__init__(message)
        self.client_order_id = client_order_id
        self.code = code


class InsufficientFunds(OrderRejected):
    """Buying power or balance too small for the order: record it and continue."""


class AccountBusy(ParityError):
    """Another Parity process holds the account's lease (SPEC §17): wait for it, then run again.
    ``held`` says by whom and since when (without the advice)."""

    exit_code = 1

    def __init__(self, message: str, held: str = ""):
        super().__init__(message)
        self.held = held or message


class LiveSafetyError(ParityError):
    """A live-trading gate refused to act (unpromoted config, stale batch, no confirmation)."""

    exit_code = 2


class RiskHalt(ParityError):
    """Raised only by the CLI to map a cycle the risk manager blocked entirely to exit code 3."""

    exit_code = 3
