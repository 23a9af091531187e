"""Every provider translation can send the deepest body the callout accepts (MAX_JSON_DEPTH)."""

from __future__ import annotations

import orjson
import pytest

from sidecar.core.chat import parse_chat_request
from sidecar.core.json_depth import MAX_JSON_DEPTH
from sidecar.core.routes import Deployment, ProviderType
from sidecar.providers.registry import provider_for
from tests.unit.core.test_json_depth import body_with_tool_depth


@pytest.mark.parametrize("provider_type", ["openai", "azure", "anthropic"])
def test_every_provider_can_send_the_deepest_accepted_body(provider_type: str) -> None:
    deployment = Deployment(name=f"p/{provider_type}", provider=ProviderType(provider_type), base_url="http://127.0.0.1:9/v1",
                            upstream_model="m", api_version="2024-06-01" if provider_type == "azure" else None)
    raw = orjson.dumps(body_with_tool_depth(MAX_JSON_DEPTH))
    body = parse_chat_request(raw).body  # accepted by the callout
    request = provider_for(deployment).build_request(body, request_id="req_1")
    assert "deep" in request.body.decode()
