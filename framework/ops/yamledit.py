"""Edit a value in a hand-written YAML file and leave every other byte as it was.

A YAML round trip would drop the comments that cite where each figure comes from and reflow the
file, so these functions change only the lines that hold the value: the top-level ``stage:``
line, a small mapping such as ``simulation.slippage`` (block or ``{flow}`` style), or the
``taker_bps`` of one fee tier. Comments after a value are kept; line endings follow the file.
When a file is written in a shape these edits do not understand they return None and the caller
prints the setting for the user to edit by hand.
"""

from __future__ import annotations

import re

import yaml

_KEY = re.compile(r"^(?P<indent>[ ]*)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*?)(?P<eol>\r?\n)?$")


def _eol(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _content(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def scalar(value: object) -> str:
    """A YAML plain scalar for a number or a simple word."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".e") else text + ".0"
    return str(value)


def _flow(values: dict) -> str:
    return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in values.items()) + "}"


def _split_comment(rest: str) -> tuple[str, str]:
    """Split ``value  # comment`` into the value and the spaces+comment after it."""
    m = re.match(r"^(?P<v>.*?)(?P<c>[ \t]+#.*)?$", rest)
    assert m is not None
    return m.group("v"), m.group("c") or ""


def _block_end(lines: list[str], i: int) -> int:
    """Index just past the block of the key on line ``i`` (its more-indented lines)."""
    n = _indent(lines[i])
    j = i + 1
    last = i + 1
    while j < len(lines):
        if _content(lines[j]):
            if _indent(lines[j]) <= n:
                break
            last = j + 1
        j += 1
    return last


def _find(lines: list[str], start: int, end: int, key: str, indent: int | None) -> int | None:
    for i in range(start, end):
        m = _KEY.match(lines[i])
        if m and m.group("key") == key and (indent is None or len(m.group("indent")) == indent):
            return i
    return None


def _child_indent(lines: list[str], i: int, end: int) -> int:
    for j in range(i + 1, end):
        if _content(lines[j]):
            return _indent(lines[j])
    return _indent(lines[i]) + 2


def set_stage(text: str, stage: str) -> str:
    """Set the top-level ``stage:`` (insert it after ``name:`` when the file has none)."""
    lines = text.splitlines(keepends=True)
    i = _find(lines, 0, len(lines), "stage", 0)
    if i is not None:
        m = _KEY.match(lines[i])
        assert m is not None
        _, comment = _split_comment(m.group("rest"))
        lines[i] = f"stage: {stage}{comment}{m.group('eol') or ''}"
        return "".join(lines)
    eol = _eol(text)
    at = _find(lines, 0, len(lines), "name", 0)
    pos = 0 if at is None else at + 1
    if pos > 0 and not lines[pos - 1].endswith("\n"):
        lines[pos - 1] += eol
    lines.insert(pos, f"stage: {stage}{eol}")
    return "".join(lines)


def set_mapping(text: str, parent: str, key: str, values: dict) -> str | None:
    """Set ``parent.key`` (a mapping of scalars) to hold ``values``; keys not named are kept."""
    lines = text.splitlines(keepends=True)
    eol = _eol(text)
    p = _find(lines, 0, len(lines), parent, 0)
    if p is None:
        tail = "" if not lines or lines[-1].endswith("\n") else eol
        return text + tail + f"{parent}:{eol}  {key}: {_flow(values)}{eol}"
    pm = _KEY.match(lines[p])
    assert pm is not None
    if _split_comment(pm.group("rest"))[0].strip():
        return None                       # parent written inline: not handled
    end = _block_end(lines, p)
    c = _child_indent(lines, p, end)
    k = _find(lines, p + 1, end, key, c)
    if k is None:
        lines.insert(p + 1, f"{' ' * c}{key}: {_flow(values)}{eol}")
        return "".join(lines)
    km = _KEY.match(lines[k])
    assert km is not None
    value, comment = _split_comment(km.group("rest"))
    value = value.strip()
    line_eol = km.group("eol") or ""
    if value.startswith("{") and value.endswith("}"):
        try:
            current = yaml.safe_load(value) or {}
        except yaml.YAMLError:
            return None
        if not isinstance(current, dict):
            return None
        lines[k] = f"{' ' * c}{key}: {_flow({**current, **values})}{comment}{line_eol}"
        return "".join(lines)
    if value and value not in ("null", "~"):
        return None
    if value:                             # key: null -> a flow mapping
        lines[k] = f"{' ' * c}{key}: {_flow(values)}{comment}{line_eol}"
        return "".join(lines)
    kend = _block_end(lines, k)
    gc = _child_indent(lines, k, kend)
    missing = dict(values)
    for j in range(k + 1, kend):
        m = _KEY.match(lines[j])
        if m and len(m.group("indent")) == gc and m.group("key") in missing:
            _, com = _split_comment(m.group("rest"))
            value = scalar(missing.pop(m.group("key")))
            lines[j] = f"{' ' * gc}{m.group('key')}: {value}{com}{m.group('eol') or ''}"
    if missing:
        if kend > 0 and not lines[kend - 1].endswith("\n"):
            lines[kend - 1] += eol
        for name, v in missing.items():
            lines.insert(kend, f"{' ' * gc}{name}: {scalar(v)}{eol}")
            kend += 1
    return "".join(lines)


def set_tier_taker(text: str, asset_class: str, tier: int, taker_bps: float) -> str | None:
    """Set ``asset_classes.ASSET_CLASS.fees.tiers[TIER].taker_bps`` written as a ``- {...}`` line."""
    lines = text.splitlines(keepends=True)
    top = _find(lines, 0, len(lines), "asset_classes", 0)
    if top is None:
        return None
    end = _block_end(lines, top)
    ac = _find(lines, top + 1, end, asset_class, _child_indent(lines, top, end))
    if ac is None:
        return None
    ac_end = _block_end(lines, ac)
    tiers = _find(lines, ac + 1, ac_end, "tiers", None)
    if tiers is None:
        return None
    seen = -1
    for j in range(tiers + 1, _block_end(lines, tiers)):
        if not _content(lines[j]):
            continue
        if not lines[j].lstrip().startswith("- {"):
            return None
        seen += 1
        if seen == tier:
            new, n = re.subn(r"(taker_bps:[ \t]*)([-+0-9.eE]+)", r"\g<1>" + scalar(float(taker_bps)),
                             lines[j], count=1)
            if n != 1:
                return None
            lines[j] = new
            return "".join(lines)
    return None
