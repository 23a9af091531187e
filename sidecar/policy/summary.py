"""What the commands print about a policy: `check`'s one-line summary, and the errors of an invalid one."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sized
from typing import TextIO

from sidecar.policy.reader import PolicyError
from sidecar.policy.references import teams_of
from sidecar.policy.snapshot import Policy

_COUNTED_ELSEWHERE = frozenset({"version", "source", "tokens", "models"})


def summarize(policy: Policy) -> str:
    """One line for `check`: `DIR: OK (version …): 1 token, 1 team, 2 models, …`."""
    routes = policy.models.routes.values()
    parts = [
        _count(len(policy.tokens.by_hash), "token"),
        _count(len(teams_of(policy.tokens)), "team"),
        _count(len(routes), "model"),
        _count(len({d.name for route in routes for d in route.deployments}), "deployment"),
    ]
    # Sections added to the Policy later (guardrails, limits …) are counted by their field name.
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        # A section object may hold its entries under its own name (GuardrailSet.guardrails).
        value = value if isinstance(value, Sized) else getattr(value, f.name, None)
        if f.name not in _COUNTED_ELSEWHERE and isinstance(value, Sized):
            parts.append(f"{len(value)} {f.name}")
    return f"{policy.source}: OK (version {policy.version}): {', '.join(parts)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def report_errors(folder: object, error: PolicyError, file: TextIO = sys.stderr) -> None:
    """What every command prints for an invalid policy: each error, then how many."""
    count = len(error.errors)
    print("\n".join(error.errors), file=file)
    print(f"{folder}: {count} error{'s' if count > 1 else ''}", file=file)
