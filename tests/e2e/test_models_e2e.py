"""GET /models and GET /models/{model} through the real Envoy: the official SDK, then raw HTTP per status."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from sidecar.devtools.launcher import Stack
from tests.e2e.client_surface import MODEL_KEYS, MODELS_PATH, request, sdk, start
from tests.e2e.faults import FaultyProvider
from tests.e2e.support import DEMO_TOKEN, RESTRICTED_TOKEN
from tests.e2e.test_operations_e2e import sidecar_log_lines  # the operations tests own these readers


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, faulty: FaultyProvider) -> Iterator[Stack]:
    stack = start(tmp_path_factory.mktemp("models"), faulty)
    yield stack
    stack.stop()


async def test_sdk_lists_the_models_the_token_may_use(gw: Stack) -> None:
    async with sdk(gw) as client, sdk(gw, RESTRICTED_TOKEN) as restricted_sdk:
        listed = [model async for model in client.models.list()]
        restricted = [model.id async for model in restricted_sdk.models.list()]
    assert [m.id for m in listed] == MODEL_KEYS
    assert {(m.object, m.created, m.owned_by) for m in listed} == {("model", 0, "gateway")}
    assert restricted == ["gpt-4"]


async def test_sdk_retrieves_one_model_with_its_category(gw: Stack) -> None:
    async with sdk(gw) as client:
        model = await client.models.retrieve("text-embedding-3-small")
        # A key with a slash: the SDK sends it as %2F.
        slashed = await client.models.retrieve("acme/embed-v2")
    assert (model.id, model.object, model.owned_by) == ("text-embedding-3-small", "model", "gateway")
    assert model.model_extra == {"category": "embedding"}
    assert slashed.id == "acme/embed-v2"


async def test_sdk_gets_not_found_for_a_model_outside_the_allow_list(gw: Stack) -> None:
    async with sdk(gw, RESTRICTED_TOKEN) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("text-embedding-3-small")
    assert caught.value.code == "model_not_found"


async def test_raw_list_and_model_answers(gw: Stack) -> None:
    status, headers, body = await request(gw, "GET", MODELS_PATH, headers={"X-Request-Id": "list-1"})
    assert (status, headers["x-request-id"], body["object"]) == (200, "list-1", "list")
    assert body["data"][1] == {"id": "text-embedding-3-small", "object": "model", "created": 0,
                               "owned_by": "gateway", "category": "embedding"}
    status, headers, body = await request(gw, "GET", MODELS_PATH + "/gpt-4?ignored=1")
    assert (status, body["id"], body["category"]) == (200, "gpt-4", "llm")
    assert headers["x-request-id"].startswith("req_")


async def test_unknown_and_disallowed_keys_are_the_same_404(gw: Stack) -> None:
    answers = []
    for token, key in ((RESTRICTED_TOKEN, "embed-azure"), (RESTRICTED_TOKEN, "nope"), (DEMO_TOKEN, "nope"),
                       (DEMO_TOKEN, "")):
        status, _, body = await request(gw, "GET", f"{MODELS_PATH}/{key}", token=token)
        assert (status, body["error"]["code"], body["error"]["type"]) == (404, "model_not_found",
                                                                          "invalid_request_error")
        answers.append(body["error"]["message"].replace(f"'{key}'", "KEY"))
    assert len(set(answers)) == 1  # nothing tells a disallowed key from an unknown one


@pytest.mark.parametrize("path", [MODELS_PATH, MODELS_PATH + "/gpt-4"])
async def test_401_without_or_with_a_bad_token(gw: Stack, path: str) -> None:
    status, _, body = await request(gw, "GET", path, token=None)
    assert (status, body["error"]["code"]) == (401, "missing_api_key")
    status, _, body = await request(gw, "GET", path, token="cgt_nobody")
    assert (status, body["error"]["type"]) == (401, "authentication_error")


@pytest.mark.parametrize(("method", "path"), [("POST", MODELS_PATH), ("DELETE", MODELS_PATH + "/gpt-4"),
                                              ("PUT", MODELS_PATH + "/gpt-4")])
async def test_405_with_allow_get(gw: Stack, method: str, path: str) -> None:
    status, headers, body = await request(gw, method, path, {"model": "gpt-4"})
    assert (status, headers["Allow"]) == (405, "GET")
    assert body["error"] == {"message": f"Method {method} is not allowed on this path; use GET",
                             "type": "invalid_request_error", "code": "method_not_allowed", "param": None}


async def test_model_requests_are_logged_and_counted(gw: Stack) -> None:
    await request(gw, "GET", MODELS_PATH + "/embed-slow", headers={"X-Request-Id": "log-models-1"})
    lines = [line for line in sidecar_log_lines(gw) if line.get("request_id") == "log-models-1"]
    access = [line for line in lines if line["logger"] == "sidecar.access"]
    decision = [line for line in lines if line["logger"] == "sidecar.decision"]
    assert [(a["endpoint"], a["model"], a["status"], a["token"]) for a in access] == [
        ("models", "embed-slow", 200, "demo")]
    assert [(d["endpoint"], d["status"]) for d in decision] == [("models", 200)]
