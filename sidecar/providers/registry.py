"""Provider type (as written in policies) -> the module that translates for it, and the settings
each type gets when a policy leaves them on `auto`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from sidecar.core.routes import Deployment, MaxTokensField, ProviderType
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.azure import AzureOpenAI
from sidecar.providers.base import Provider
from sidecar.providers.openai_compat import OpenAICompatible

PROVIDER_TYPES: Mapping[ProviderType, Callable[[Deployment], Provider]] = MappingProxyType({
    ProviderType.OPENAI: OpenAICompatible,
    ProviderType.AZURE: AzureOpenAI,
    ProviderType.ANTHROPIC: AnthropicProvider,
})

# Azure OpenAI takes `stream_options` and `max_completion_tokens` from this api-version on
# (2024-09-01-preview; GA 2024-10-21); older versions answer 400 "Unrecognized request argument".
AZURE_NEWER_FIELDS_SINCE = "2024-09-01"
_OPENAI_HOSTS = ("api.openai.com",)


def provider_for(deployment: Deployment) -> Provider:
    return PROVIDER_TYPES[deployment.provider](deployment)

# Provider types with an embeddings API (OpenAI's `/embeddings` wire format); the policy loader
# refuses an `embedding` model with a deployment of any other type.
EMBEDDING_PROVIDER_TYPES: frozenset[ProviderType] = frozenset({ProviderType.OPENAI, ProviderType.AZURE})

def auto_stream_include_usage(provider: ProviderType, api_version: str | None) -> bool:
    """Whether a streamed request may ask for usage (`stream_options.include_usage`) by default.

    OpenAI and compatible servers take it (vLLM, Ollama, Groq …); Anthropic streams always carry
    usage (the translation drops the field); Azure only from api-version 2024-09-01 on.
    """
    if provider is ProviderType.AZURE:
        return _azure_has_newer_fields(api_version)
    return True


def auto_max_tokens_field(provider: ProviderType, base_url: str, api_version: str | None) -> MaxTokensField:
    """The field a completion cap the gateway adds goes in, by default.

    OpenAI's own API wants `max_completion_tokens` (its reasoning models reject `max_tokens`);
    compatible servers reliably know `max_tokens`; Azure knows the newer name from 2024-09-01 on.
    Anthropic's translation turns either into its required `max_tokens`.
    """
    if provider is ProviderType.AZURE:
        return "max_completion_tokens" if _azure_has_newer_fields(api_version) else "max_tokens"
    if provider is ProviderType.OPENAI and (urlsplit(base_url).hostname or "") not in _OPENAI_HOSTS:
        return "max_tokens"
    return "max_completion_tokens"


def _azure_has_newer_fields(api_version: str | None) -> bool:
    # Versions are dates (YYYY-MM-DD, maybe with -preview), so text order is date order.
    return (api_version or "")[:10] >= AZURE_NEWER_FIELDS_SINCE
