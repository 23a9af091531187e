"""The optional fields of a Chat Completions request that the gateway decides on or reads.

Checked by shape (OpenAI's Chat Completions reference: `n`, `max_tokens`/`max_completion_tokens`,
`user`, `tools`, `functions`, `response_format`, `prediction`), each failure an InvalidRequest (400)
naming its `param`. The quota estimate multiplies by `n` and reserves the token cap, and the
guardrails read tool definitions and schemas: a value the gateway would read one way and a
provider another (`"n": "3"`, which lenient servers coerce to 3; two different caps) must not
pass, or the reservation would cover less than the provider may write.
"""

from __future__ import annotations

from typing import Any, Final

from sidecar.core.errors import InvalidRequest

MAX_CHOICES: Final = 128  # OpenAI's documented maximum of `n`


def token_cap(body: dict[str, Any]) -> int | None:
    """The completion-token cap the request asks for: `max_completion_tokens` or (older)
    `max_tokens`, positive integers. Both may be sent only with the same value: with two, a
    provider may honour either, so the gateway would not know which to reserve."""
    max_tokens = positive_int(body, "max_tokens")
    max_completion = positive_int(body, "max_completion_tokens")
    if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
        raise InvalidRequest(
            f"'max_tokens' ({max_tokens}) and 'max_completion_tokens' ({max_completion}) differ; send one of them "
            "(max_completion_tokens is the current name)", param="max_completion_tokens", code="invalid_value")
    return max_completion if max_completion is not None else max_tokens


def positive_int(body: dict[str, Any], name: str) -> int | None:
    """`body[name]` if a positive integer (not a bool), None if absent or null; else 400 `invalid_value`."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer", param=name, code="invalid_value")
    return value


def check_options(body: dict[str, Any]) -> None:
    """Raises InvalidRequest (400) unless `n`, `user`, `tools`, `functions`, `response_format` and
    `prediction`, where present and not null, have the shapes OpenAI documents."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES):
        raise InvalidRequest(f"'n' must be an integer from 1 to {MAX_CHOICES}", param="n", code="invalid_value")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string", param="user", code="invalid_type")
    _check_definitions(body, "tools", tool=True)
    _check_definitions(body, "functions", tool=False)
    for name in ("response_format", "prediction"):
        value = body.get(name)
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("type"), str)):
            raise InvalidRequest(f"'{name}' must be an object with a string 'type'", param=name, code="invalid_type")


def _check_definitions(body: dict[str, Any], name: str, *, tool: bool) -> None:
    """`tools`: `[{"type": "function", "function": {"name", "description"?, "parameters"?}}, ...]`
    (other tool types pass with their `type`); legacy `functions`: `[{"name", ...}, ...]`."""
    definitions = body.get(name)
    if definitions is None:
        return
    if not isinstance(definitions, list):
        raise InvalidRequest(f"'{name}' must be an array", param=name, code="invalid_type")
    for index, entry in enumerate(definitions):
        where = f"{name}[{index}]"
        if not isinstance(entry, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where, code="invalid_type")
        if tool:
            if not isinstance(entry.get("type"), str):
                raise InvalidRequest(f"'{where}.type' is required", param=f"{where}.type", code="invalid_type")
            if entry["type"] != "function":
                continue
            where, entry = f"{where}.function", entry.get("function")
            if not isinstance(entry, dict):
                raise InvalidRequest(f"'{where}' must be an object", param=where, code="invalid_type")
        _check_function_definition(where, entry)


def _check_function_definition(where: str, function: dict[str, Any]) -> None:
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise InvalidRequest(f"'{where}.name' is required", param=f"{where}.name", code="invalid_type")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"'{where}.description' must be a string", param=f"{where}.description",
                             code="invalid_type")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest(f"'{where}.parameters' must be a JSON Schema object", param=f"{where}.parameters",
                             code="invalid_type")
