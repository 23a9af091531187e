"""String leaves of JSON values the exchange walker reads by shape rather than by name.

Two readings, both iterative (an answer may nest up to orjson's 1,024 levels, deeper than
Python's recursion limit) and both in document order:

- `schema_strings`: the strings a model reads in a JSON Schema object (a tool's `parameters`, a
  `response_format.json_schema`): every `description` and `title`, and every string inside
  `enum`, `const`, `default`, `examples` and `example` (at any depth of those values). Property
  names (the keys of `properties`, `$defs`, ...) are keys, not values: they are not read.
  Keywords such as `type`, `format`, `pattern`, `$ref` and `name` are not prose and are not read.
- `other_strings`: every string leaf of a value the walker does not know, except identifiers,
  enums and binary (`UNREAD_KEYS`, keys ending in `_id`, `data:` URLs): the rule for answer
  fields no reader was written for (README, "What guardrails read").

A path is the tuple of object keys and array indexes from the document's root (`core.walk`).
"""

from __future__ import annotations

from collections.abc import Iterator

PathItem = str | int
Path = tuple[PathItem, ...]

_SCHEMA_TEXT_KEYS = frozenset({"description", "title"})
_SCHEMA_VALUE_KEYS = frozenset({"enum", "const", "default", "examples", "example"})
# Keys whose object values map names to subschemas: the names are keys, the values schemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keys whose string values are identifiers, enums, timestamps or opaque (often base64) data: a
# detector reading them would only find false positives, and a mask would break them.
UNREAD_KEYS = frozenset({"id", "type", "role", "index", "name", "finish_reason", "object", "model",
                         "format", "signature", "data", "encrypted_content", "mime_type", "media_type",
                         "status", "created", "expires_at"})


def schema_strings(schema: object, path: Path) -> Iterator[tuple[Path, str]]:
    """(path, string) of every string a model reads in `schema` (see the module docstring)."""
    stack: list[tuple[object, Path, bool]] = [(schema, path, False)]
    while stack:
        node, where, values = stack.pop()
        if isinstance(node, str):
            yield where, node
        elif isinstance(node, list):  # a list of schemas (anyOf, items, ...) or of values (enum, examples)
            stack.extend((item, (*where, index), values) for index, item in reversed(list(enumerate(node)))
                         if values or not isinstance(item, str))  # `required`, `type` lists are names
        elif isinstance(node, dict):
            stack.extend(reversed(list(_schema_children(node, where, values))))


def _schema_children(node: dict[str, object], where: Path, values: bool) -> Iterator[tuple[object, Path, bool]]:
    for key, value in node.items():
        child = (*where, key)
        if values or key in _SCHEMA_VALUE_KEYS:
            yield value, child, True  # a value given to the model: every string in it
        elif isinstance(value, str):
            if key in _SCHEMA_TEXT_KEYS:
                yield value, child, False
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            yield from ((sub, (*child, name), False) for name, sub in value.items() if not isinstance(sub, str))
        elif isinstance(value, dict | list):
            yield value, child, False


def other_strings(value: object, path: Path) -> Iterator[tuple[Path, str]]:
    """(path, string) of every non-empty string leaf under `value` whose key is not an
    identifier, enum or binary field (`UNREAD_KEYS`, `*_id`), and that is not a `data:` URL."""
    stack: list[tuple[object, Path]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            key = where[-1] if where else ""
            if node and not _unread(key) and not node.startswith("data:"):
                yield where, node
        elif isinstance(node, list):
            stack.extend((item, (*where, index)) for index, item in reversed(list(enumerate(node))))
        elif isinstance(node, dict):
            stack.extend((item, (*where, key)) for key, item in reversed(list(node.items())))


def _unread(key: PathItem) -> bool:
    return isinstance(key, str) and (key in UNREAD_KEYS or key.endswith("_id"))
