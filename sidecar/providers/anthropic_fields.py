"""Which OpenAI chat request fields the Anthropic translation carries, and how (none is dropped silently).

Every top-level field of OpenAI's Chat Completions request (API reference, "Create chat completion")
is either translated to its Anthropic Messages counterpart, accepted because its value changes nothing
(`n: 1`, `logprobs: false`, a zero penalty …), or refused with a 400 naming it. Unknown fields are
refused too, as OpenAI itself refuses them ("Unrecognized request argument"). `null` means "not sent".

`response_format` is translated the usual way (Anthropic's tool-use guide, "JSON output"): one tool
whose `input_schema` is the requested schema, forced by `tool_choice`; the tool's input becomes the
message content (`anthropic_response`, `anthropic_stream`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sidecar.core.errors import ProviderError
from sidecar.core.types import JSONDict

# The name of the forced tool when the schema has no usable name of its own.
JSON_TOOL = "json_response"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# Fields the translation reads (anthropic_request) or the gateway owns (request_id, guardrails).
TRANSLATED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
    "stream_options", "user", "tools", "tool_choice", "parallel_tool_calls", "response_format",
    "top_k", "request_id", "guardrails",
})

# Fields with no Anthropic counterpart, and the values that ask for nothing (accepted, not sent).
# `prompt_cache_key` and `safety_identifier` only steer OpenAI's own caching and abuse tracking.
_NEUTRAL: Mapping[str, tuple[Any, ...]] = MappingProxyType({
    "n": (1,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logprobs": (False,),
    "logit_bias": ({},),
    "store": (False,),
    "metadata": ({},),
    "modalities": (["text"],),
    "service_tier": ("auto", "default"),
    "prompt_cache_key": (),
    "safety_identifier": (),
})
_ANY_VALUE = ("prompt_cache_key", "safety_identifier")


def invalid(message: str, param: str | None = None) -> ProviderError:
    """A request this provider cannot express: the client's fault, so a 400 that is not retried."""
    return ProviderError(
        message, status=400, error_type="invalid_request_error", code="unsupported_for_provider", param=param
    )


def check_fields(body: JSONDict) -> None:
    """Raises a 400 naming the first field the translation cannot carry."""
    for name, value in body.items():
        if value is None or name in TRANSLATED or name in _ANY_VALUE:
            continue
        if any(_same(value, allowed) for allowed in _NEUTRAL.get(name, ())):
            continue
        if name == "n":
            # Anthropic returns one completion per request; answering n=3 with one choice would
            # break clients that index choices[1].
            raise invalid("This model's provider supports only n=1", param="n")
        raise invalid(f"'{name}' is not supported by this model's provider (Anthropic)", param=name)


def _same(value: Any, allowed: Any) -> bool:
    # JSON's false is not 0 here (Python's False == 0 is).
    return bool(value == allowed) and isinstance(value, bool) == isinstance(allowed, bool)


def json_tool(body: JSONDict) -> JSONDict | None:
    """The forced tool that carries `response_format` json_object / json_schema; None for text."""
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind not in ("json_object", "json_schema"):
        raise invalid("'response_format.type' must be text, json_object or json_schema", param="response_format")
    if body.get("tools"):
        raise invalid("'response_format' cannot be combined with 'tools' for this model's provider (Anthropic)",
                      param="response_format")
    if kind == "json_object":
        return {"name": JSON_TOOL, "description": "Respond with a JSON object.", "input_schema": {"type": "object"}}
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        # Anthropic's tool input is always a JSON object (so is OpenAI's strict root schema).
        raise invalid("'response_format.json_schema.schema' must be a JSON schema of an object",
                      param="response_format.json_schema.schema")
    assert isinstance(spec, dict)
    name = spec.get("name")
    tool: JSONDict = {
        "name": name if isinstance(name, str) and _TOOL_NAME.match(name) else JSON_TOOL,
        "description": spec.get("description") if isinstance(spec.get("description"), str)
        else "Respond with JSON that matches this schema.",
        "input_schema": {"type": "object", **schema},
    }
    return tool
