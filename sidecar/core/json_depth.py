"""How deeply a request body may nest: the depth the forwarding path can still serialise.

orjson (the forwarding path's serialiser) refuses to write more than 254 nested containers,
while it reads up to 1024: a body between the two would pass validation and then fail on its
way to the provider. The callout therefore refuses bodies nested deeper than `MAX_JSON_DEPTH`
(the top-level object counts as 1), which leaves room for what provider translations wrap
around a field (Anthropic's content blocks, Azure's envelope), with a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from sidecar.core.errors import InvalidRequest

MAX_JSON_DEPTH = 128
_SHOWN_SEGMENTS = 6


def check_depth(body: dict[str, Any], raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raises InvalidRequest (400 `nesting_too_deep`, `param` the field's path) when a value in
    `body` (parsed from `raw`) sits inside more than `limit` objects and arrays."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # fewer brackets than the limit, even inside strings: cannot be too deep (C speed)
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(body, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > limit:
            raise _too_deep(path, limit)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(child, (dict, list)):
                segment = f"[{key}]" if isinstance(key, int) else f".{key}"
                stack.append((child, depth + 1, (*path, segment) if len(path) < _SHOWN_SEGMENTS else path))


def _too_deep(path: tuple[str, ...], limit: int) -> InvalidRequest:
    field = "".join(path).lstrip(".")
    shown = field + ("…" if len(path) >= _SHOWN_SEGMENTS else "")
    return InvalidRequest(f"'{shown}' is nested more than {limit} levels deep; the gateway accepts at most {limit}",
                          param=field, code="nesting_too_deep")
