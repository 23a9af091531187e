"""Embeddings in quotas: the estimate reads the input, writes no tokens; spend settles at the prompt price."""

from __future__ import annotations

import orjson

from sidecar.core.chat import parse_chat_request
from sidecar.core.embeddings import parse_embeddings_request
from sidecar.core.limits import LimitsPolicy, ModelQuotaSettings, Price
from sidecar.features.quotas.estimate import Estimate, estimate_for


def embeddings(value: object) -> bytes:
    return orjson.dumps({"model": "embed", "input": value})


def test_text_inputs_are_chars_over_four_and_at_least_one_each() -> None:
    request = parse_embeddings_request(embeddings(["x" * 40, "y", "z" * 9]))
    assert estimate_for(request, "embed", LimitsPolicy()) == Estimate(10 + 1 + 3, 0)


def test_token_id_inputs_count_their_ids() -> None:
    assert estimate_for(parse_embeddings_request(embeddings([[1, 2, 3], [4]])), "embed", LimitsPolicy()) == Estimate(4, 0)
    assert estimate_for(parse_embeddings_request(embeddings([7, 8])), "embed", LimitsPolicy()) == Estimate(2, 0)


def test_no_completion_allowance_even_with_a_model_default() -> None:
    limits = LimitsPolicy(models={"embed": ModelQuotaSettings(completion_tokens=500)})
    assert estimate_for(parse_embeddings_request(embeddings("abcd")), "embed", limits).completion_tokens == 0


def test_chat_requests_keep_their_estimate() -> None:
    chat = parse_chat_request(b'{"model": "gpt-4", "messages": [{"role": "user", "content": "abcd"}]}')
    assert estimate_for(chat, "gpt-4", LimitsPolicy(completion_tokens=10)) == Estimate(1 + 4 + 3, 10)


def test_spend_is_the_prompt_price() -> None:
    price = Price(prompt=0.02, completion=100.0)  # USD per 1M tokens
    assert price.micro_usd(1_000_000, 0) == 20_000
