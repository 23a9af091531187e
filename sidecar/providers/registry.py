"""Provider type name (as written in policies) -> the module that translates for it."""

from __future__ import annotations

from typing import Callable

from sidecar.models import Deployment
from sidecar.providers.base import Provider
from sidecar.providers.openai_compat import OpenAICompatible

PROVIDER_TYPES: dict[str, Callable[[Deployment], Provider]] = {
    "openai": OpenAICompatible,
}


def provider_for(deployment: Deployment) -> Provider:
    return PROVIDER_TYPES[deployment.provider](deployment)
