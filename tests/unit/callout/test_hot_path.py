"""The callout's per-request shortcuts give exactly what the long way gives: the decision built
without its dataclass __init__, the precomputed HMAC, per-route deployment names (and a reload
serves fresh ones), and the chat parser's fast paths on a corpus of messages and bodies."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.callout.handoff import Decision, DecisionSigner, decode, encode
from sidecar.callout.pipeline import Check, DecisionPipeline, authenticate_now
from sidecar.core.chat import _LONG_DIGIT_RUN, _SCAN, _check_message, _check_messages, parse_chat_request
from sidecar.core.endpoints import EndpointKind
from sidecar.core.errors import GatewayError, InvalidRequest
from sidecar.core.routes import ModelRoute
from sidecar.core.tokens import _bearer_token, hash_token
from sidecar.policy.loader import load_policy

TOKEN = "cgt_unit_hot_path_token"
KEY = b"k" * 32


def write_policy(folder: Path, deployments: str) -> None:
    (folder / "policy.yaml").write_text(f"""\
providers:
  main: {{type: openai, base_url: 'http://provider.test/v1'}}
  backup: {{type: openai, base_url: 'http://backup.test/v1'}}
models:
  gpt-4:
    deployments: {deployments}
tokens:
  wide:
    sha256: {hash_token(TOKEN)}
    team: blue
""")


async def test_decision_is_the_one_the_constructor_builds(tmp_path: Path) -> None:
    write_policy(tmp_path, "[{provider: main, model: a}, {provider: backup, model: b}]")
    body = orjson.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    check = await DecisionPipeline().decide(load_policy(tmp_path), body, f"Bearer {TOKEN}", "hdr-1")
    check.extra["note"] = {"n": 1}
    built = check.decision(30.0, now=1000.0)
    expected = Decision(request_id="hdr-1", token_name="wide", team="blue", model_key="gpt-4",
                        deployments=("main/a", "backup/b"), stream=True, client_wants_usage=False,
                        policy_version=check.policy.version, body_sha256=hashlib.sha256(body).hexdigest(),
                        expires_at=1030.0, extra={"note": {"n": 1}}, endpoint=EndpointKind.CHAT)
    assert built == expected and repr(built) == repr(expected) and hash(built.deployments)
    assert list(vars(built)) == [f.name for f in dataclasses.fields(Decision)]
    assert orjson.dumps(built) == orjson.dumps(expected)
    assert decode(encode(built, KEY), KEY) == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.stream = False  # type: ignore[misc]
    check.extra["note"] = "changed later"
    assert built.extra == {"note": {"n": 1}}  # a copy, as before


@pytest.mark.parametrize("key", [b"", b"short", KEY, b"x" * 64, b"y" * 65, bytes(range(256)) * 2])
def test_signer_is_hmac_sha256(key: bytes) -> None:
    signer = DecisionSigner(key)
    for payload in (b"", b"eyJh", b"p" * 1000):
        expected = base64.urlsafe_b64encode(hmac.digest(key, payload, hashlib.sha256)[:18]).decode()
        assert signer.sign(payload) == expected
        assert signer.sign(payload) == expected  # the kept states are copied, never consumed


def test_encode_with_a_signer_is_encode_with_its_key() -> None:
    decision = Decision(request_id="r", token_name="t", team=None, model_key="m", deployments=("d",),
                        stream=False, client_wants_usage=False, policy_version="v", expires_at=5.0)
    header = encode(decision, DecisionSigner(KEY))
    assert header == encode(decision, KEY)
    assert decode(header, DecisionSigner(KEY)) == decode(header, KEY) == decision


async def test_deployment_names_follow_a_policy_reload(tmp_path: Path) -> None:
    write_policy(tmp_path, "[{provider: main, model: a}]")
    body = orjson.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    first = await DecisionPipeline().decide(load_policy(tmp_path), body, f"Bearer {TOKEN}", None)
    assert first.deployments == ("main/a",)
    write_policy(tmp_path, "[{provider: backup, model: b}, {provider: main, model: a}]")
    second = await DecisionPipeline().decide(load_policy(tmp_path), body, f"Bearer {TOKEN}", None)
    assert second.deployments == ("backup/b", "main/a")
    assert first.deployments == ("main/a",)
    # A cache in the instance, not a field: equality, repr, asdict and JSON are the route's own.
    assert "deployment_names" not in {f.name for f in dataclasses.fields(ModelRoute)}
    route = second.route
    assert route is not None and "deployment_names" not in repr(route)
    assert b"deployment_names" not in orjson.dumps(route, default=str)
    assert route == dataclasses.replace(route)


MESSAGES: list[Any] = [
    {"role": "user", "content": "hi"}, {"role": "system", "content": ""}, {"role": "developer", "content": "x"},
    {"role": "assistant", "content": "x"}, {"role": "tool", "content": "x"}, {"role": "function", "content": "x"},
    {"role": "tool", "content": "x", "tool_call_id": "c1"}, {"role": "function", "content": "x", "name": "f"},
    {"role": "user", "content": None}, {"role": "user", "content": 5}, {"role": "user", "content": []},
    {"role": "user", "content": [{"type": "text", "text": "a"}]}, {"role": "user", "content": [{"type": "x"}]},
    {"role": "robot", "content": "x"}, {"role": ["user"], "content": "x"}, {"role": {"a": 1}, "content": "x"},
    {"role": None, "content": "x"}, {"role": "user"}, {"content": "x"}, {"role": "user", "text": "x"},
    {"role": "assistant", "content": None}, {"role": "assistant", "tool_calls": []},
    {"role": "assistant", "content": "x", "refusal": 3}, {"role": "user", "content": "x", "tool_calls": None},
    {"role": "user", "content": "x", "extra": 1}, {}, [], "text", None, 3,
]


def outcome(run: Any) -> tuple[str | None, str | None, str] | None:
    try:
        run()
    except InvalidRequest as error:
        return (error.param, error.code, error.message)
    return None


@pytest.mark.parametrize("message", MESSAGES)
def test_message_fast_path_verdicts_are_the_full_checks(message: Any) -> None:
    assert outcome(lambda: _check_messages([message])) == outcome(lambda: _check_message(0, message))


@pytest.mark.parametrize("extra", [{}, {"stream": True}, {"temperature": 3}, {"request_id": "id-1"}])
def test_two_field_body_parses_as_with_an_unknown_field(extra: dict[str, Any]) -> None:
    base = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], **extra}

    def parsed(body: dict[str, Any]) -> Any:
        try:
            request = parse_chat_request(orjson.dumps(body))
        except InvalidRequest as error:
            return (error.param, error.code)
        return {**dataclasses.asdict(request), "body": None}

    assert parsed(base) == parsed({**base, "unknown_field": 1})


async def test_a_replaced_core_stage_still_runs(tmp_path: Path) -> None:
    write_policy(tmp_path, "[{provider: main, model: a}]")
    seen: list[str] = []

    async def own_authenticate(check: Check) -> None:
        seen.append("own")
        authenticate_now(check)

    body = orjson.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    check = await DecisionPipeline({"authenticate": own_authenticate}).decide(
        load_policy(tmp_path), body, f"Bearer {TOKEN}", None)
    assert seen == ["own"] and check.deployments == ("main/a",)


@pytest.mark.parametrize("authorization", [
    None, "", " ", "Bearer", "Bearer ", "Bearer cgt_", f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN}",
    f" Bearer {TOKEN}", f"Bearer {TOKEN} ", f"Bearer {TOKEN}\t", f"Bearer {TOKEN}\u00a0", f"Bearer {TOKEN} x",
    f"Basic {TOKEN}", f"Bearer x{TOKEN}", "Bearer cgt_\u00e9", f"Bearer{TOKEN}",
])
def test_bearer_fast_path_authenticates_as_the_parser(tmp_path: Path, authorization: str | None) -> None:
    write_policy(tmp_path, "[{provider: main, model: a}]")
    store = load_policy(tmp_path).tokens

    def verdict(run: Any) -> Any:
        try:
            return run()
        except GatewayError as error:
            return (error.status, error.code)

    assert verdict(lambda: store.authenticate(authorization)) == verdict(
        lambda: store.by_hash.get(hash_token(_bearer_token(authorization))) or store.authenticate("Bearer cgt_no"))


def test_payload_alphabets_both_decode() -> None:
    signer = DecisionSigner(KEY)
    for n in range(200):  # until the JSON's base64 holds the characters the two alphabets spell apart
        decision = Decision(request_id=f"r{'?' * n}~>", token_name="t", team=None, model_key="m", deployments=(),
                            stream=False, client_wants_usage=False, policy_version="v", expires_at=5.0)
        header = encode(decision, signer)
        if "+" in header or "/" in header:
            break
    else:
        raise AssertionError("no payload with + or /")
    assert "-" not in header.split(".")[1] and "_" not in header.split(".")[1]
    assert decode(header, KEY) == decision
    # A header signed before the change (base64url payload) still decodes.
    old_payload = base64.urlsafe_b64encode(orjson.dumps(decision)).rstrip(b"=")
    assert decode(f"v2.{old_payload.decode()}.{signer.sign(old_payload)}", KEY) == decision


@pytest.mark.parametrize("raw", [b"", b"{}", b"[[{{", b"1234567890123456789", b"123456789012345678", b"a1234567890123456789z",
                                 b"{\"a\": [1, {\"b\": \"[{\"}], \"n\": 99999999999999999999}", bytes(range(256)) * 3])
def test_one_scan_answers_both_questions(raw: bytes) -> None:
    scanned = raw.translate(_SCAN)
    assert (_LONG_DIGIT_RUN in scanned) == (b"0" * 19 in bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in raw))
    assert scanned.count(b"[") == raw.count(b"[") + raw.count(b"{")
