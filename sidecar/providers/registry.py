"""Provider type name (as written in policies) -> the module that translates for it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from sidecar.core.routes import Deployment
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.azure import AzureOpenAI
from sidecar.providers.base import Provider
from sidecar.providers.openai_compat import OpenAICompatible

PROVIDER_TYPES: Mapping[str, Callable[[Deployment], Provider]] = MappingProxyType({
    "openai": OpenAICompatible,
    "azure": AzureOpenAI,
    "anthropic": AnthropicProvider,
})


def provider_for(deployment: Deployment) -> Provider:
    return PROVIDER_TYPES[deployment.provider](deployment)

# Provider types with an embeddings API (OpenAI's `/embeddings` wire format); the policy loader
# refuses an `embedding` model with a deployment of any other type.
EMBEDDING_PROVIDER_TYPES: frozenset[str] = frozenset({"openai", "azure"})
