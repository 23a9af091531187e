"""Typed, line-aware reading of policy YAML.

Policies are read from PyYAML's node tree rather than plain dicts, so every error can name
`FILE:LINE: key.path: message`, duplicate keys (which PyYAML would silently collapse) are
caught, and all errors of a run are collected instead of stopping at the first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import TypeVar

import yaml

T = TypeVar("T")
S = TypeVar("S", bound=str)

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_UNITS = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0})


class PolicyError(Exception):
    """Every problem found in a policy folder, each as `FILE:LINE: key.path: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ErrorLog:
    """The errors of one load, in the order found, each `FILE:LINE: key.path: message`."""

    errors: list[str] = field(default_factory=list)
    # One constructor per load turns scalar nodes into values (a fresh loader per scalar costs more).
    constructor: yaml.constructor.SafeConstructor = field(default_factory=yaml.constructor.SafeConstructor)

    def add(self, file: str, node: yaml.Node | None, path: str, message: str) -> None:
        """Records `message` at `node`'s line (1-based; line 1 when there is no node)."""
        line = node.start_mark.line + 1 if node is not None else 1
        self.errors.append(f"{file}:{line}: {path or '(file)'}: {message}")


@dataclass
class Located:
    """A node with the file it came from and its dotted key path, for error messages."""

    file: str
    node: yaml.Node
    path: str
    log: ErrorLog

    def error(self, message: str) -> None:
        """Reports `message` at this node."""
        self.log.add(self.file, self.node, self.path, message)

    def child(self, node: yaml.Node, key: str | int) -> Located:
        """The node under this one at mapping `key` or list index `key`, with its path extended."""
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return Located(self.file, node, path, self.log)

    # ---- scalars -------------------------------------------------------------------------
    def scalar(self) -> object:
        """The YAML value of a scalar node (str, int, float, bool, date, None); a sentinel for lists and mappings."""
        if not isinstance(self.node, yaml.ScalarNode):
            return _NOT_SCALAR
        value: object = self.log.constructor.construct_object(self.node, deep=True)
        return value

    def as_str(self) -> str | None:
        """A non-empty string (with `${VAR}` / `${VAR:-default}` expanded), or None after reporting why."""
        value = self.scalar()
        if isinstance(value, (date, datetime)) and isinstance(self.node, yaml.ScalarNode):
            # An unquoted `2024-06-01` (Azure's api_version) is a date to YAML; the author meant the text.
            value = self.node.value
        if not isinstance(value, str) or value == "":
            self.error("must be a non-empty string")
            return None
        return self._expand_env(value)

    def _expand_env(self, value: str) -> str | None:
        """`${VAR}` and `${VAR:-default}`, so one policy serves dev ports and prod URLs.

        An unset variable without a default is an error: silently using "" would turn a
        missing deployment setting into a policy that loads but routes nowhere.
        """
        if "${" not in value:
            return value
        missing = [m.group(1) for m in _ENV_REFERENCE.finditer(value)
                   if m.group(2) is None and not os.environ.get(m.group(1))]
        if missing:
            self.error(f"environment variable {', '.join(missing)} is not set (or use ${{VAR:-default}})")
            return None
        return _ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)

    def as_regex(self) -> re.Pattern[str] | None:
        """A regular expression, compiled now so a bad pattern is a load error, not a request-time one."""
        text = self.as_str()
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as exc:
            self.error(f"not a valid regular expression: {exc}")
            return None

    def as_int(self, minimum: int | None = None) -> int | None:
        """An integer (not a bool) of at least `minimum`, or None after reporting why."""
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            self.error("must be an integer")
            return None
        if minimum is not None and value < minimum:
            self.error(f"must be at least {minimum}")
            return None
        return value

    def as_number(self, minimum: float | None = None, maximum: float | None = None) -> float | None:
        """An int or float within [minimum, maximum], as float, or None after reporting why."""
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error("must be a number")
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.error(f"must be between {minimum} and {maximum}")
            return None
        return float(value)

    def as_bool(self) -> bool | None:
        """true or false, or None after reporting why."""
        value = self.scalar()
        if not isinstance(value, bool):
            self.error("must be true or false")
            return None
        return value

    def as_duration(self) -> float | None:
        """Seconds, from `250ms`, `30s`, `5m`, `1h` (a bare number means seconds)."""
        value = self.scalar()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            self.error("must be a duration such as 250ms, 30s, 5m or 1h")
            return None
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]

    def as_choice(self, choices: Sequence[S]) -> S | None:
        """The choice this scalar spells (a StrEnum member when given members); None: reported."""
        value = self.scalar()
        for choice in choices:
            if value == choice:
                return choice
        self.error(f"must be one of {', '.join(choices)}")
        return None

    # ---- collections ---------------------------------------------------------------------
    def items(self) -> Iterator[Located]:
        """The items of a list node (reports `must be a list` otherwise)."""
        if not isinstance(self.node, yaml.SequenceNode):
            self.error("must be a list")
            return
        for index, node in enumerate(self.node.value):
            yield self.child(node, index)

    def str_list(self) -> tuple[str, ...] | None:
        """A list of non-empty strings, or None after reporting why."""
        values = [item.as_str() for item in self.items()]
        if not isinstance(self.node, yaml.SequenceNode) or any(v is None for v in values):
            return None
        return tuple(v for v in values if v is not None)

    def mapping(self) -> Mapping | None:
        """This node read as a Mapping, or None after reporting `must be a mapping`."""
        if not isinstance(self.node, yaml.MappingNode):
            self.error("must be a mapping")
            return None
        return Mapping(self)


class _NotScalar:
    pass


_NOT_SCALAR = _NotScalar()


class Mapping:
    """A YAML mapping read key by key; `finish()` reports the keys nobody asked for."""

    def __init__(self, where: Located) -> None:
        self.where = where
        self.entries: dict[str, Located] = {}
        self._read: set[str] = set()
        assert isinstance(where.node, yaml.MappingNode)
        for key_node, value_node in where.node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                where.log.add(where.file, key_node, where.path or "(top)", "keys must be strings")
                continue
            child = where.child(value_node, key)
            if key in self.entries:
                where.log.add(where.file, key_node, child.path, "duplicate key (an earlier one is on line "
                              f"{self.entries[key].node.start_mark.line + 1})")
                continue
            self.entries[key] = child

    def get(self, key: str) -> Located | None:
        """The entry at `key`, or None; either way `key` counts as known for `finish()`."""
        self._read.add(key)
        return self.entries.get(key)

    def require(self, key: str) -> Located | None:
        """The entry at `key`, or None after reporting `is required`."""
        found = self.get(key)
        if found is None:
            self.where.log.add(self.where.file, self.where.node, _join(self.where.path, key), "is required")
        return found

    def read(self, key: str, reader: Callable[[Located], T | None], default: T) -> T:
        """`reader` applied to the entry at `key`; `default` when it is absent or invalid (invalid is reported)."""
        found = self.get(key)
        if found is None:
            return default
        value = reader(found)
        return default if value is None else value

    def named(self) -> Iterator[tuple[str, Located]]:
        """All entries, for mappings whose keys are names chosen by the policy author."""
        self._read.update(self.entries)
        yield from self.entries.items()

    def finish(self) -> None:
        """Reports every key nobody read as `unknown key`."""
        for key, where in self.entries.items():
            if key not in self._read:
                where.log.add(where.file, where.node, where.path, "unknown key")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
