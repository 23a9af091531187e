"""One loaded, validated, immutable policy: what every request is decided on."""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.core.limits import LimitsPolicy
from sidecar.core.routes import ModelRegistry
from sidecar.core.tokens import TokenStore
from sidecar.policy.guardrails import GuardrailSet


@dataclass(frozen=True)
class Policy:
    """One immutable snapshot of a policy folder; `version` is the first 12 hex digits of the files' SHA-256."""

    version: str  # content hash of the policy files: logs and metrics say which policy decided
    source: str  # the folder it was loaded from
    tokens: TokenStore
    models: ModelRegistry
    guardrails: GuardrailSet = field(default_factory=GuardrailSet)
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)
