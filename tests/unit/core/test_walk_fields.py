"""The walker's newer fields: request definitions (tools, functions, response schema, prediction)
and the answer fields beyond OpenAI's core ones (audio transcript, content parts, annotations,
reasoning_details, thinking_blocks, unknown fields), whole and streamed."""

from __future__ import annotations

from typing import Any

from sidecar.core.walk import (
    Edit,
    Field,
    Text,
    apply_edits,
    chunk_texts,
    completion_texts,
    get_at,
    path_text,
    request_texts,
    text_edits,
)

TOOL = {"type": "function", "function": {
    "name": "send_mail", "description": "Send a mail.", "strict": True,
    "parameters": {"type": "object", "title": "Mail", "required": ["to"], "properties": {
        "to": {"type": "string", "format": "email", "pattern": "^.+@.+$", "description": "Recipient",
               "default": "desk@example.com"},
        "kind": {"type": "string", "enum": ["plain", "html"], "examples": ["plain", {"note": "rich"}]},
        "description": {"type": "string", "description": "A property named description"},
        "ref": {"$ref": "#/$defs/Ref"}},
        "$defs": {"Ref": {"type": "string", "const": "fixed", "title": "Ref"}}}}}
BODY: dict[str, Any] = {
    "model": "m", "messages": [{"role": "user", "content": "hi"}],
    "tools": [TOOL, {"type": "custom", "custom": {"name": "grep", "description": "Search the code"}}],
    "functions": [{"name": "legacy", "description": "Old style", "parameters": {"type": "object", "properties": {
        "q": {"type": "string", "description": "Query"}}}}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "description": "The answer",
                                                               "strict": True, "schema": {
        "type": "object", "properties": {"mood": {"type": "string", "enum": ["glad", "sad"]}}}}},
    "prediction": {"type": "content", "content": [{"type": "text", "text": "pat.sample@"},
                                                  {"type": "text", "text": "example.com"}]},
}


def seen(texts: list[Text]) -> list[tuple[str, Field, str, int, str]]:
    return [(path_text(t.path), t.field, t.role, t.owner_index, t.text) for t in texts]


def test_request_definitions_read_every_string_a_model_reads_with_paths_into_the_body() -> None:
    tools, schema = Field.TOOL_DEFINITION, Field.RESPONSE_SCHEMA
    params = "tools[0].function.parameters"
    assert seen(request_texts(BODY)) == [
        ("messages[0].content", Field.CONTENT, "user", 0, "hi"),
        ("tools[0].function.description", tools, "tools", -1, "Send a mail."),
        (f"{params}.title", tools, "tools", -1, "Mail"),
        (f"{params}.properties.to.description", tools, "tools", -1, "Recipient"),
        (f"{params}.properties.to.default", tools, "tools", -1, "desk@example.com"),
        (f"{params}.properties.kind.enum[0]", tools, "tools", -1, "plain"),
        (f"{params}.properties.kind.enum[1]", tools, "tools", -1, "html"),
        (f"{params}.properties.kind.examples[0]", tools, "tools", -1, "plain"),
        (f"{params}.properties.kind.examples[1].note", tools, "tools", -1, "rich"),
        (f"{params}.properties.description.description", tools, "tools", -1, "A property named description"),
        (f"{params}.$defs.Ref.const", tools, "tools", -1, "fixed"),
        (f"{params}.$defs.Ref.title", tools, "tools", -1, "Ref"),
        ("tools[1].custom.description", tools, "tools", -1, "Search the code"),
        ("functions[0].description", tools, "tools", -1, "Old style"),
        ("functions[0].parameters.properties.q.description", tools, "tools", -1, "Query"),
        ("response_format.json_schema.description", schema, "response_format", -1, "The answer"),
        ("response_format.json_schema.schema.properties.mood.enum[0]", schema, "response_format", -1, "glad"),
        ("response_format.json_schema.schema.properties.mood.enum[1]", schema, "response_format", -1, "sad"),
        ("prediction.content", Field.PREDICTION, "prediction", -1, "pat.sample@example.com"),
    ]
    # Names, types, formats, patterns and $refs are not prose; every path resolves to its string.
    assert all(get_at(BODY, t.path) == t.text for t in request_texts(BODY) if not t.segments)


def test_a_plain_request_and_definitions_false_read_the_messages_only() -> None:
    assert seen(request_texts(BODY, definitions=False)) == [("messages[0].content", Field.CONTENT, "user", 0, "hi")]
    assert seen(request_texts({"messages": [], "tools": "x", "response_format": {"type": "text"},
                               "prediction": {"content": None}, "functions": [3]})) == []


def test_masks_replace_schema_values_in_place_and_split_prediction_parts() -> None:
    body: dict[str, Any] = {"tools": [TOOL], "prediction": BODY["prediction"]}
    body = {"tools": [{"type": "function", "function": {"name": "f", "description": "mail pat.sample@example.com",
                                                        "parameters": {"type": "object"}}}],
            "prediction": {"type": "content", "content": [{"type": "text", "text": "pat.sample@"},
                                                          {"type": "text", "text": "example.com"}]}}
    description, prediction = request_texts(body)
    edits = [*text_edits(description, 5, 27, "[EMAIL_1]"), *text_edits(prediction, 0, 22, "[EMAIL_1]")]
    assert edits[0] == Edit(("tools", 0, "function", "description"), 5, 27, "[EMAIL_1]")
    apply_edits(body, edits)
    assert body["tools"][0]["function"] == {"name": "f", "description": "mail [EMAIL_1]",
                                            "parameters": {"type": "object"}}
    assert body["prediction"]["content"] == [{"type": "text", "text": "[EMAIL_1]"}, {"type": "text", "text": ""}]


ANSWER: dict[str, Any] = {
    "role": "assistant",
    "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "think"}]},
                {"type": "text", "text": "say"}, {"type": "reference", "reference_ids": [1], "label": "src"}],
    "audio": {"id": "audio_1", "data": "UklGRg==", "expires_at": 1, "transcript": "heard"},
    "annotations": [{"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 3,
                                                              "url": "https://x.example/a", "title": "Page"}}],
    "reasoning_details": [{"type": "reasoning.text", "text": "step", "signature": "c2ln", "format": "f", "index": 0},
                          {"type": "reasoning.summary", "summary": "short", "index": 1},
                          {"type": "reasoning.encrypted", "data": "ZW5j", "index": 2}],
    "thinking_blocks": [{"type": "thinking", "thinking": "block", "signature": "c2ln"},
                        {"type": "redacted_thinking", "data": "cmVk"}],
    "provider_fields": {"note": "extra", "request_id": "r1", "id": "x", "name": "n", "image": "data:image/png;base64,AA",
                        "nested": [{"type": "t", "text": "deep"}]},
    "name": "bot",
}


def test_completion_reads_each_new_field_exactly_and_unknown_fields_by_their_string_leaves() -> None:
    texts = completion_texts({"choices": [{"index": 0, "message": ANSWER}]})
    base = "choices[0].message"
    assert [(path_text(t.path), t.field, t.text, t.key) for t in texts] == [
        (f"{base}.content[0].thinking[0].text", Field.CONTENT_THINKING, "think", None),
        (f"{base}.content[1].text", Field.CONTENT_TEXT, "say", None),
        (f"{base}.content[2].label", Field.OTHER, "src", None),
        (f"{base}.audio.transcript", Field.AUDIO_TRANSCRIPT, "heard", None),
        (f"{base}.annotations[0].url_citation.url", Field.ANNOTATION, "https://x.example/a", None),
        (f"{base}.annotations[0].url_citation.title", Field.ANNOTATION, "Page", None),
        (f"{base}.reasoning_details[0].text", Field.REASONING_TEXT, "step", None),
        (f"{base}.reasoning_details[1].summary", Field.REASONING_SUMMARY, "short", None),
        (f"{base}.thinking_blocks[0].thinking", Field.THINKING, "block", None),
        (f"{base}.provider_fields.note", Field.OTHER, "extra", None),
        (f"{base}.provider_fields.nested[0].text", Field.OTHER, "deep", None),
    ]


def test_stream_keys_are_stable_across_chunks_and_shapes() -> None:
    def keys(delta: dict[str, Any], values: list[Text] | None = None) -> list[tuple[str, tuple[int, Field, int] | None]]:
        return [(path_text(t.path), t.key) for t in chunk_texts({"choices": [{"index": 3, "delta": delta}]}, values)]

    # Text parts as a list, or one part object: one stream per choice whatever the part's position.
    assert keys({"content": [{"type": "text", "text": "a"}]}) == [("choices[0].delta.content[0].text",
                                                                   (3, Field.CONTENT_TEXT, 0))]
    assert keys({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "t"}]},
                             {"type": "text", "text": "b"}]}) == [
        ("choices[0].delta.content[0].thinking[0].text", (3, Field.CONTENT_THINKING, 0)),
        ("choices[0].delta.content[1].text", (3, Field.CONTENT_TEXT, 0))]
    assert keys({"content": {"type": "text", "text": "c"}}) == [("choices[0].delta.content.text",
                                                                 (3, Field.CONTENT_TEXT, 0))]
    assert keys({"audio": {"id": "a1", "transcript": "he"}}) == [("choices[0].delta.audio.transcript",
                                                                  (3, Field.AUDIO_TRANSCRIPT, 0))]
    # reasoning_details pieces are keyed by the item's index, not their position in the chunk.
    assert keys({"reasoning_details": [{"type": "reasoning.text", "text": "x", "index": 2},
                                       {"type": "reasoning.summary", "summary": "y", "index": 0}]}) == [
        ("choices[0].delta.reasoning_details[0].text", (3, Field.REASONING_TEXT, 2)),
        ("choices[0].delta.reasoning_details[1].summary", (3, Field.REASONING_SUMMARY, 0))]
    assert keys({"thinking_blocks": [{"type": "thinking", "thinking": "z"}]}) == [
        ("choices[0].delta.thinking_blocks[0].thinking", (3, Field.THINKING, 0))]


def test_stream_whole_values_only_when_asked_and_without_a_key() -> None:
    delta = {"annotations": ANSWER["annotations"], "extra": {"note": "n"}, "content": "c"}
    chunk = {"choices": [{"index": 0, "delta": delta}]}
    assert [t.field for t in chunk_texts(chunk)] == [Field.CONTENT]
    values: list[Text] = []
    assert [t.field for t in chunk_texts(chunk, values)] == [Field.CONTENT]
    assert [(path_text(t.path), t.field, t.key) for t in values] == [
        ("choices[0].delta.annotations[0].url_citation.url", Field.ANNOTATION, None),
        ("choices[0].delta.annotations[0].url_citation.title", Field.ANNOTATION, None),
        ("choices[0].delta.extra.note", Field.OTHER, None)]


def test_a_deeply_nested_unknown_field_is_walked_without_recursion() -> None:
    deep: Any = "pat.sample@example.com"
    for _ in range(3000):
        deep = {"x": deep}
    (text,) = completion_texts({"choices": [{"message": {"role": "assistant", "odd": deep}}]})
    assert text.field is Field.OTHER and len(text.path) == 3004 and text.text == "pat.sample@example.com"


def test_request_reads_reasoning_items_a_client_sends_back() -> None:
    body = {"messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "first"}]}, {"type": "text", "text": "done"},
        {"type": "thinking", "thinking": "plain"}], "reasoning_details": [
        {"type": "reasoning.text", "text": "step", "signature": "c2ln"}, {"type": "reasoning.summary", "summary": "s"}],
        "thinking_blocks": [{"type": "thinking", "thinking": "mm", "signature": "c2ln"}]}]}
    assert seen(request_texts(body)) == [
        ("messages[0].content", Field.CONTENT, "assistant", 0, "done"),
        ("messages[0].content[0].thinking[0].text", Field.CONTENT_THINKING, "assistant", 0, "first"),
        ("messages[0].content[2].thinking", Field.CONTENT_THINKING, "assistant", 0, "plain"),
        ("messages[0].reasoning_details[0].text", Field.REASONING_TEXT, "assistant", 0, "step"),
        ("messages[0].reasoning_details[1].summary", Field.REASONING_SUMMARY, "assistant", 0, "s"),
        ("messages[0].thinking_blocks[0].thinking", Field.THINKING, "assistant", 0, "mm")]


def test_a_custom_tool_calls_input_is_read_in_requests_answers_and_streams() -> None:
    call = {"id": "c", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
    body = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}]}
    assert [(path_text(t.path), t.field, t.text) for t in request_texts(body) if t.field is Field.CUSTOM_INPUT] == [
        ("messages[1].tool_calls[0].custom.input", Field.CUSTOM_INPUT, "SELECT 1")]
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}}]}
    assert [(path_text(t.path), t.text) for t in completion_texts(answer)] == [
        ("choices[0].message.tool_calls[0].custom.input", "SELECT 1")]
    streamed = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 2, "custom": {"input": "SEL"}}]}}]}
    assert [(t.key, t.text, t.field.is_json) for t in chunk_texts(streamed)] == [((0, Field.CUSTOM_INPUT, 2), "SEL",
                                                                                   False)]
