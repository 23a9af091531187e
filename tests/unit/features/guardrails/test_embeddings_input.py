"""Input guardrails on embeddings, through the app's own pipeline: block, mask, log, token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.app import init_app
from sidecar.appkeys import EXTENSIONS, PIPELINE
from sidecar.callout.pipeline import Check, Denied
from sidecar.core.endpoints import EndpointKind
from sidecar.core.tokens import hash_token
from sidecar.features.guardrails.embeddings_input import INPUT_MASKS, apply_input_masks
from sidecar.policy.loader import load_policy
from sidecar.policy.store import PolicyStore
from sidecar.settings import Settings

TOKEN = "cgt_unit_embeddings_guard"


def policy_dir(tmp_path: Path, guardrails: str) -> Path:
    (tmp_path / "policy.yaml").write_text(f"""\
providers:
  main: {{type: openai, base_url: 'http://provider.test/v1'}}
models:
  embed:
    category: embedding
    deployments: [{{provider: main, model: embed-up}}]
tokens:
  app: {{sha256: {hash_token(TOKEN)}}}
guardrails:
{guardrails}
""")
    return tmp_path


BLOCK = "  no-pii: {type: pii, categories: [email], action: block}"
MASK = "  mask-pii: {type: pii, categories: [email, phone], action: mask}"
LOG = "  log-pii: {type: pii, categories: [email], action: log}"


async def decide(tmp_path: Path, rules: str, **body: Any) -> Check:
    folder = policy_dir(tmp_path, rules)
    policy = load_policy(folder)
    app = init_app(Settings(policies_dir=folder, policy_poll_seconds=0), PolicyStore(policy))
    raw = orjson.dumps({"model": "embed", **body})
    return await app[PIPELINE].decide(policy, raw, f"Bearer {TOKEN}", None, kind=EndpointKind.EMBEDDINGS,
                                      dry_run=True)


async def test_block_names_the_input_index(tmp_path: Path) -> None:
    with pytest.raises(Denied) as caught:
        await decide(tmp_path, BLOCK, input=["fine", "mail bob@example.com"])
    assert orjson.loads(caught.value.error.body()) == {"error": {
        "message": "Content blocked by guardrail", "type": "guardrail_block", "guardrail_key": "no-pii",
        "action": "block", "findings": [{"category": "email", "message": "PII detected", "input_index": 1}]}}
    assert caught.value.error.status == 400


async def test_clean_input_passes(tmp_path: Path) -> None:
    check = await decide(tmp_path, BLOCK, input="nothing to see")
    assert INPUT_MASKS.name not in check.extra and not check.trace.get("guardrails")


async def test_mask_edits_travel_in_the_decision_and_apply_to_the_input(tmp_path: Path) -> None:
    check = await decide(tmp_path, MASK, input=["call 415-555-0100", "ok", "bob@example.com or bob@example.com"])
    decision = check.decision()
    edits = decision.get(INPUT_MASKS)
    assert edits is not None and [edit.input_index for edit in edits] == [0, 2, 2]
    body: dict[str, Any] = {"model": "embed", "input": ["call 415-555-0100", "ok",
                                                        "bob@example.com or bob@example.com"]}
    apply_input_masks(body, decision, check.policy)
    assert body["input"] == ["call [PHONE_1]", "ok", "[EMAIL_1] or [EMAIL_1]"]


async def test_mask_of_a_single_string_input(tmp_path: Path) -> None:
    check = await decide(tmp_path, MASK, input="write to ann@example.org")
    body: dict[str, Any] = {"input": "write to ann@example.org"}
    apply_input_masks(body, check.decision(), check.policy)
    assert body["input"] == "write to [EMAIL_1]"


async def test_the_forwarding_editors_leave_no_gateway_field(tmp_path: Path) -> None:
    opt_in = MASK.replace("action: mask}", "action: mask, default_on: false}")
    check = await decide(tmp_path, opt_in, input="ann@example.org", guardrails=["mask-pii"])
    folder = policy_dir(tmp_path, opt_in)
    app = init_app(Settings(policies_dir=folder, policy_poll_seconds=0), PolicyStore(check.policy))
    body: dict[str, Any] = {"model": "embed", "input": "ann@example.org", "guardrails": ["mask-pii"]}
    for edit in app[EXTENSIONS].request_editors:
        edit(body, check.decision(), check.policy)
    assert body == {"model": "embed", "input": "[EMAIL_1]"}


@pytest.mark.parametrize("guardrail", [BLOCK, MASK])
async def test_token_ids_are_refused_by_a_block_or_mask_guardrail(tmp_path: Path, guardrail: str) -> None:
    with pytest.raises(Denied) as caught:
        await decide(tmp_path, guardrail, input=[[1, 2, 3], [4]])
    error = orjson.loads(caught.value.error.body())["error"]
    assert (error["type"], error["action"]) == ("guardrail_block", "block")
    assert error["findings"] == [{"category": "token_ids",
                                  "message": "Token-id input cannot be checked by this guardrail; "
                                             "send the input as text"}]


async def test_token_ids_pass_a_log_guardrail_and_are_traced(tmp_path: Path) -> None:
    check = await decide(tmp_path, LOG, input=[1, 2, 3])
    assert check.trace["guardrails"][0]["category"] == "token_ids"
    assert check.trace["guardrails"][0]["action"] == "log"


async def test_token_ids_pass_when_no_guardrail_applies(tmp_path: Path) -> None:
    scoped = BLOCK.replace("action: block}", "action: block, scope: {tokens: [other]}}")
    folder = policy_dir(tmp_path, scoped)
    (folder / "policy.yaml").write_text((folder / "policy.yaml").read_text().replace(
        "tokens:\n", f"tokens:\n  other: {{sha256: {hash_token('cgt_other_token')}}}\n"))
    policy = load_policy(folder)
    app = init_app(Settings(policies_dir=folder, policy_poll_seconds=0), PolicyStore(policy))
    check = await app[PIPELINE].decide(policy, orjson.dumps({"model": "embed", "input": [1]}), f"Bearer {TOKEN}",
                                       None, kind=EndpointKind.EMBEDDINGS, dry_run=True)
    assert not check.trace.get("guardrails")
