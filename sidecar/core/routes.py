"""Model keys clients ask for, and the provider deployments that serve them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Literal

from sidecar.core.credentials import Credential
from sidecar.core.endpoints import EMBEDDING_CATEGORY, LLM_CATEGORY
from sidecar.core.errors import ModelNotFound, WrongModelCategory
from sidecar.core.kinds import FAILURE_KINDS, Outcome

_SERVED_AS = {LLM_CATEGORY: "a chat model", EMBEDDING_CATEGORY: "an embedding model"}


class ProviderType(StrEnum):
    """The wire format a provider speaks, as policies spell it (`providers.<name>.type`)."""

    OPENAI = "openai"  # OpenAI Chat Completions, and every server compatible with it (vLLM, Ollama …)
    AZURE = "azure"  # Azure OpenAI: OpenAI's body, deployment and api-version in the URL
    ANTHROPIC = "anthropic"  # Anthropic Messages API


# Which request field carries a completion cap the gateway adds (OpenAI renamed max_tokens to
# max_completion_tokens; older Azure api-versions and many compatible servers know only max_tokens).
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


@dataclass(frozen=True)
class BreakerConfig:
    """A deployment's circuit-breaker thresholds (seconds for `window` and `cooldown`)."""

    enabled: bool = True
    consecutive_failures: int = 5  # open after this many failures in a row
    error_rate: float | None = None  # or: open when failures/requests in `window` reach this
    window: float = 60.0  # seconds
    min_requests: int = 20  # the error rate is only judged over at least this many requests
    cooldown: float = 30.0  # seconds open before probing
    half_open_probes: int = 1  # concurrent probe requests while half-open
    failure_on: frozenset[Outcome] = field(default_factory=lambda: frozenset(FAILURE_KINDS))


@dataclass(frozen=True)
class Timeouts:
    """Seconds; `first_byte` and `idle` bound provider silences, `total` the whole exchange."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0
    total: float = 900.0


@dataclass(frozen=True)
class Deployment:
    """One provider endpoint serving a model (OpenAI-compatible, Azure OpenAI or Anthropic)."""

    name: str
    provider: ProviderType
    base_url: str
    upstream_model: str
    credential: Credential = field(default_factory=Credential)
    headers: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None  # Azure
    default_max_tokens: int = 4096  # Anthropic requires max_tokens
    # Whether streamed requests may carry `stream_options.include_usage` (policy: auto by type and
    # api-version); without it the stream's usage is settled by estimate.
    stream_include_usage: bool = True
    max_tokens_field: MaxTokensField = "max_completion_tokens"
    timeouts: Timeouts = field(default_factory=Timeouts)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    priority: int = 0  # lower is tried first; equal priorities share traffic by `weight`
    weight: float = 1.0


@dataclass(frozen=True)
class ModelRoute:
    """A model key clients send, its category (`llm`, `embedding`, …) and its deployments in policy order."""

    key: str
    category: str
    deployments: tuple[Deployment, ...]

    @cached_property
    def _deployment_names(self) -> tuple[str, ...]:
        """The deployments' names in policy order, computed once per route (so once per policy
        snapshot) instead of per request (callout.pipeline). Cached in the instance, not a field:
        ==, repr and asdict ignore it, and orjson too, which leaves out `_` names."""
        return tuple(d.name for d in self.deployments)


@dataclass(frozen=True)
class ModelRegistry:
    """The policy's models by key."""

    routes: Mapping[str, ModelRoute]

    def resolve_llm(self, key: str) -> ModelRoute:
        """The chat model `key`; raises ModelNotFound (404) or WrongModelCategory (422)."""
        route = self.find(key)
        check_category(route, LLM_CATEGORY)
        return route

    def find(self, key: str) -> ModelRoute:
        """The route of `key`; raises ModelNotFound (404) for a key the policy does not define."""
        route = self.routes.get(key)
        if route is None:
            raise ModelNotFound(f"The model '{key}' does not exist", param="model")
        return route


def check_category(route: ModelRoute, category: str) -> None:
    """Raises WrongModelCategory (422, code `model_not_<category>`) naming both categories."""
    if route.category != category:
        raise WrongModelCategory(
            f"The model '{route.key}' is a '{route.category}' model, not {_SERVED_AS.get(category, category)} "
            f"(category '{category}')",
            param="model", code=f"model_not_{category}",
        )
