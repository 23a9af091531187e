"""OpenAI chat request -> Anthropic Messages API request body.

Only fields Anthropic understands are emitted (it rejects unknown top-level fields); which OpenAI
field becomes what, and which are refused with a 400 naming them, is `anthropic_fields`.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.core.types import JSONDict
from sidecar.providers.anthropic_fields import check_fields, invalid, json_tool

# Anthropic's temperature range is 0..1 while OpenAI's is 0..2. We clamp instead of scaling:
# the values clients actually send (0, 0.2, 0.7, 1) keep their meaning, and only the rarely used
# 1..2 band collapses to Anthropic's maximum.
_MAX_TEMPERATURE = 1.0

# OpenAI's newer "developer" role is its system role under another name.
_SYSTEM_ROLES = ("system", "developer")

# Separates system messages that were spread over the conversation when they become one prompt.
_SYSTEM_JOINER = "\n\n"


def build_body(body: JSONDict, *, model: str, default_max_tokens: int) -> JSONDict:
    """The Anthropic body for one OpenAI chat request; `body` is left untouched.

    Raises ProviderError (400, `param` naming the field) for what Anthropic cannot express.
    """
    check_fields(body)
    system, messages = _convert_messages(body.get("messages"))
    out: JSONDict = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens), "messages": messages}
    if system:
        out["system"] = system
    _copy_sampling(body, out)
    if body.get("stream"):
        out["stream"] = True
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if isinstance(body.get("top_k"), int):
        out["top_k"] = body["top_k"]  # Anthropic's own sampling field, for clients that know it
    _copy_tools(body, out)
    forced = json_tool(body)
    if forced is not None:
        out["tools"] = [forced]
        out["tool_choice"] = {"type": "tool", "name": forced["name"]}
    return out


def _max_tokens(body: JSONDict, default: int) -> int:
    # max_completion_tokens is OpenAI's current name and max_tokens the deprecated one, so the
    # newer field wins when a client sends both.
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def _copy_sampling(body: JSONDict, out: JSONDict) -> None:
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)):
        out["temperature"] = min(max(float(temperature), 0.0), _MAX_TEMPERATURE)
    if isinstance(body.get("top_p"), (int, float)):
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    if sequences:
        out["stop_sequences"] = sequences


# --- tools -------------------------------------------------------------------------------------


def _copy_tools(body: JSONDict, out: JSONDict) -> None:
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [_tool(tool) for tool in tools]
    choice = _tool_choice(body.get("tool_choice"), parallel=body.get("parallel_tool_calls"))
    # A tool_choice without tools is an Anthropic 400; the client asked for nothing then anyway.
    if choice is not None and "tools" in out:
        out["tool_choice"] = choice


def _tool(tool: Any) -> JSONDict:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid("Only function tools with a name are supported", param="tools")
    converted: JSONDict = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        converted["description"] = function["description"]
    # Anthropic requires input_schema; OpenAI allows omitting parameters for argument-less tools.
    converted["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return converted


def _tool_choice(choice: Any, *, parallel: Any) -> JSONDict | None:
    if choice is None and parallel is not False:
        return None
    mapped: JSONDict
    if choice is None or choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "none":
        # {"type": "none"} rather than dropping the tools: a conversation that already holds
        # tool_use/tool_result blocks must still declare its tools or Anthropic rejects it.
        return {"type": "none"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and "name" in choice["function"]:
        mapped = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise invalid("Unsupported tool_choice", param="tool_choice")
    if parallel is False:
        mapped["disable_parallel_tool_use"] = True
    return mapped


# --- messages ----------------------------------------------------------------------------------


def _convert_messages(messages: Any) -> tuple[str, list[JSONDict]]:
    if not isinstance(messages, list):
        raise invalid("'messages' must be a list", param="messages")
    system: list[str] = []
    converted: list[JSONDict] = []
    legacy_call: str | None = None  # the tool_use id given to the last legacy function_call
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid("Each message must be an object", param="messages")
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.extend(_texts(message.get("content")))
            continue
        if role == "assistant" and isinstance(message.get("function_call"), dict):
            legacy_call = f"call_legacy_{index}"
        blocks = _legacy_blocks(role, message, legacy_call) or _message_blocks(role, message)
        if blocks:
            _append_merged(converted, "user" if role in ("user", "tool", "function") else "assistant", blocks)
    if system and not converted:
        # Anthropic refuses an empty `messages` (the chat parser already refuses an empty list, so
        # only system prompts are left here); saying so names the field and costs no call.
        raise invalid("This model's provider needs a user or assistant message besides the system prompt",
                      param="messages")
    return _SYSTEM_JOINER.join(text for text in system if text), converted


def _append_merged(messages: list[JSONDict], role: str, blocks: list[JSONDict]) -> None:
    # Anthropic requires user/assistant alternation, so a run of same-role messages (several user
    # turns, or the tool results answering one assistant turn) becomes one message.
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _message_blocks(role: Any, message: JSONDict) -> list[JSONDict]:
    if role == "user":
        return _content_blocks(message.get("content"))
    if role == "assistant":
        return _content_blocks(message.get("content")) + _tool_use_blocks(message.get("tool_calls"))
    if role == "tool":
        return [_tool_result_block(message)]
    raise invalid(f"Unsupported message role: {role!r}", param="messages")


def _legacy_blocks(role: Any, message: JSONDict, legacy_call: str | None) -> list[JSONDict]:
    """OpenAI's legacy function calling as tool use: an assistant `function_call` becomes a
    tool_use block, the `function` message answering it its tool_result; an assistant turn that is
    only a `refusal` becomes its text. Empty for every other message."""
    if role == "function":
        if legacy_call is None:
            raise invalid("A function message needs an earlier assistant function_call", param="messages")
        return [_tool_result_block({**message, "tool_call_id": legacy_call})]
    if role != "assistant":
        return []
    extra: list[JSONDict] = []
    if message.get("content") is None and isinstance(message.get("refusal"), str) and message["refusal"]:
        extra.append({"type": "text", "text": message["refusal"]})
    if isinstance(message.get("function_call"), dict) and legacy_call is not None:
        extra.append(_tool_use_block({"id": legacy_call, "type": "function", "function": message["function_call"]}))
    return [*_message_blocks(role, message), *extra] if extra else []


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return []


def _content_blocks(content: Any) -> list[JSONDict]:
    if content is None:
        return []
    if isinstance(content, str):
        # Anthropic rejects empty text blocks; an assistant turn that only calls tools has "".
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid("Message content must be a string or a list of parts", param="messages")
    return [block for part in content if (block := _part_block(part)) is not None]


def _part_block(part: Any) -> JSONDict | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]} if part["text"] else None
    if kind == "refusal" and isinstance(part.get("refusal"), str):  # an assistant's refusal part
        return {"type": "text", "text": part["refusal"]} if part["refusal"] else None
    if kind == "image_url":
        return _image_block(part.get("image_url"))
    raise invalid(f"Unsupported content part type: {kind!r}", param="messages")


def _image_block(image: Any) -> JSONDict:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise invalid("image_url part without a url", param="messages")
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, sep, data = url[len("data:"):].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise invalid("Image data URLs must be base64 with a media type", param="messages")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _tool_use_blocks(tool_calls: Any) -> list[JSONDict]:
    if not isinstance(tool_calls, list):
        return []
    return [_tool_use_block(call) for call in tool_calls]


def _tool_use_block(call: Any) -> JSONDict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(call.get("id"), str):
        raise invalid("Malformed tool call in an assistant message", param="messages")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise invalid("Tool call arguments must be a JSON object", param="messages") from exc
    if not isinstance(parsed, dict):
        raise invalid("Tool call arguments must be a JSON object", param="messages")
    return {"type": "tool_use", "id": call["id"], "name": function.get("name"), "input": parsed}


def _tool_result_block(message: JSONDict) -> JSONDict:
    if not isinstance(message.get("tool_call_id"), str):
        raise invalid("A tool message needs a tool_call_id", param="messages")
    content = message.get("content")
    result: Any = content
    if not isinstance(content, str):
        result = [{"type": "text", "text": text} for text in _texts(content) if text]
    return {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": result}
