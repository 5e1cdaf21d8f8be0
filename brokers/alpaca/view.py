"""A lenient, read-only view of Alpaca's JSON, in place of alpaca-py's strict response models.

alpaca-py's models type every enum field with a closed ``Enum``: one value the venue added before the
SDK knew it (a new exchange, alpaca-py#276; a new asset status, #340; the asset class ``crypto_perp``
and exchange ``ASCX``, #624) makes pydantic raise ``ValidationError`` and the whole answer is lost,
so every command reading it stops until the SDK is upgraded (catalogue row 14). The adapter
therefore asks the SDK for the JSON as it came (``TradingClient(raw_data=True)``) and reads it
through ``View``: attribute access like the models' (``o.status``, ``o.legs[0].qty``, ``a.asset_class``),
values left as the venue sent them (enum values and timestamps are strings; ``wire`` compares enum
values as strings and decides what an unknown one means), a field the answer lacks reads as None
as the models' optional fields do.

    o = View({"status": "new", "legs": [{"qty": "1"}]})
    o.status, o.legs[0].qty, o.replaced_by      # "new", "1", None
"""

from __future__ import annotations

from typing import Any

# the models' attribute names for JSON keys that are Python keywords (alpaca-py ``Asset.asset_class``
# is ``Field(alias="class")``)
_ALIASES = {"asset_class": "class"}


class View:
    """One JSON object read by attribute (see module docstring); it cannot be changed."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        data = self._data
        if name not in data and name in _ALIASES:
            name = _ALIASES[name]
        return view(data.get(name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a venue answer is read-only ({name})")

    def __getitem__(self, key: str) -> Any:
        return view(self._data[key])

    def get(self, key: str, default: Any = None) -> Any:
        return view(self._data.get(key, default))

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:   # the field names only: an answer can carry account numbers
        return f"View({', '.join(self._data)})"


def view(x: Any) -> Any:
    """``x`` as the adapter reads it: a JSON object as a ``View``, a list element by element, anything
    else unchanged."""
    if isinstance(x, dict):
        return View(x)
    if isinstance(x, list):
        return [view(i) for i in x]
    return x


class LenientTrading:
    """alpaca-py's ``TradingClient`` made with ``raw_data=True``: every method answers with ``view`` of
    the venue's JSON instead of a strict model. Requests (``MarketOrderRequest`` ...) are unchanged;
    the SDK's other attributes (``_session``, ``_retry``) are the client's own."""

    def __init__(self, client: Any):
        object.__setattr__(self, "_client", client)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return view(attr(*args, **kwargs))

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"set {name} on the SDK client before it is wrapped (client.make_clients)")
