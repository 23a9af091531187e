"""One loaded, validated, immutable policy: what every request is decided on."""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.guardrails.policy import GuardrailSet
from sidecar.models import ModelRegistry
from sidecar.quotas.limits import LimitsPolicy
from sidecar.tokens import TokenStore


@dataclass(frozen=True)
class Policy:
    version: str  # content hash of the policy files: logs and metrics say which policy decided
    source: str  # the folder it was loaded from
    tokens: TokenStore
    models: ModelRegistry
    guardrails: GuardrailSet = field(default_factory=GuardrailSet)
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)
