"""`explain` with an embeddings body: told apart from chat by the body or `--endpoint`, masked input,
the provider's /embeddings URL, the embeddings estimate, and the per-category 422."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sidecar.cli.explain import body_endpoint, explain
from sidecar.cli.main import DEMO_TOKEN
from sidecar.core.endpoints import EndpointKind
from sidecar.policy.loader import load_policy
from sidecar.settings import Settings

REPO = Path(__file__).resolve().parents[3]
DEMO = load_policy(REPO / "policies")
EMBEDDINGS = {"model": "text-embedding-3-small", "input": ["hello there"]}


def test_the_body_tells_the_endpoint() -> None:
    assert body_endpoint(json.dumps(EMBEDDINGS).encode()) is EndpointKind.EMBEDDINGS
    assert body_endpoint(b'{"model": "m", "messages": [], "input": "x"}') is EndpointKind.CHAT
    assert body_endpoint(b"not json") is EndpointKind.CHAT


async def test_an_allowed_embeddings_request() -> None:
    explanation = await explain(Settings(), DEMO, json.dumps(EMBEDDINGS).encode(), token=DEMO_TOKEN)
    assert (explanation.status, explanation.endpoint) == (200, EndpointKind.EMBEDDINGS)
    assert explanation.provider_url is not None and explanation.provider_url.endswith("/v1/embeddings")
    assert explanation.body == {"model": "demo-embedding", "input": ["hello there"]}
    assert explanation.trace["limits"]["estimate"] == {"prompt_tokens": 3, "completion_tokens": 0}
    assert explanation.as_json()["endpoint"] == "embeddings"


async def test_an_llm_model_is_422_on_embeddings_and_the_endpoint_can_be_forced(tmp_path: Path) -> None:
    body = json.dumps({"model": "gpt-4", "input": "x"}).encode()
    explanation = await explain(Settings(), DEMO, body, token=DEMO_TOKEN)
    assert (explanation.status, explanation.code) == (422, "model_not_embedding")
    forced = await explain(Settings(), DEMO, body, token=DEMO_TOKEN, endpoint=EndpointKind.CHAT)
    assert (forced.status, forced.body["error"]["param"]) == (400, "messages")


async def test_masked_input_is_what_the_provider_would_get(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for name in ("models.yaml", "tokens.yaml"):
        (folder / name).write_text((REPO / "policies" / name).read_text())
    (folder / "guardrails.yaml").write_text(
        "guardrails:\n  mask-mail:\n    type: pii\n    categories: [email]\n    action: mask\n")
    body = {"model": "text-embedding-3-small", "input": "write to jane@example.com"}
    explanation = await explain(Settings(), load_policy(folder), json.dumps(body).encode(), token=DEMO_TOKEN)
    assert explanation.status == 200
    assert explanation.body["input"] == "write to [EMAIL_1]"


def test_the_command_takes_an_embeddings_body_and_the_endpoint_flag() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GATEWAY_POLICIES", None)
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "explain", "--token", DEMO_TOKEN, "--body", "-", "--endpoint",
         "embeddings", "--json", "policies"],
        cwd=REPO, env=env, input=json.dumps(EMBEDDINGS), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    decided = json.loads(result.stdout)
    assert (decided["status"], decided["endpoint"], decided["body"]["model"]) == (200, "embeddings", "demo-embedding")
