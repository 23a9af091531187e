"""RecentDecisions: the forward takes this process's own decision by its exact header, or decodes."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from sidecar.app import init_app
from sidecar.appkeys import PIPELINE, POLICY_STORE, RECENT_DECISIONS, SETTINGS
from sidecar.callout.handoff import Decision, InvalidDecision, decode, encode
from sidecar.callout.recent import RecentDecisions
from sidecar.cli.main import DEMO_TOKEN
from sidecar.settings import Settings

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
REPO_POLICIES = Path(__file__).resolve().parents[3] / "policies"


def _decision(request_id: str, expires_at: float = 2_000_000_000.0) -> Decision:
    return Decision(request_id=request_id, token_name="t", team=None, model_key="gpt-4", deployments=("d",),
                    stream=False, client_wants_usage=False, policy_version="v", expires_at=expires_at)


def test_the_signing_process_gets_back_the_same_object_once() -> None:
    recent = RecentDecisions()
    decision = _decision("req_a")
    header = encode(decision, KEY)
    recent.remember(header, decision)
    assert recent.take(header, KEY) is decision
    assert len(recent) == 0
    # A replay of the same header is decoded (and then meets the single-claim check downstream).
    replayed = recent.take(header, KEY)
    assert replayed == decision and replayed is not decision


def test_a_miss_decodes_and_still_checks_the_signature() -> None:
    recent = RecentDecisions()
    decision = _decision("req_b")
    header = encode(decision, KEY)
    assert recent.take(header, KEY) == decision  # signed by another worker with the shared key
    with pytest.raises(InvalidDecision):
        recent.take(encode(decision, OTHER_KEY), KEY)
    with pytest.raises(InvalidDecision):
        recent.take(None, KEY)
    with pytest.raises(InvalidDecision):
        recent.take("", KEY)


def test_a_header_that_differs_by_one_character_is_not_taken_from_memory() -> None:
    recent = RecentDecisions()
    decision = _decision("req_c")
    header = encode(decision, KEY)
    recent.remember(header, decision)
    with pytest.raises(InvalidDecision):
        recent.take(header[:-1] + ("A" if header[-1] != "A" else "B"), KEY)
    assert len(recent) == 1


def test_bounded_by_capacity_and_by_expiry() -> None:
    recent = RecentDecisions(capacity=3)
    headers = []
    for n in range(5):
        decision = _decision(f"req_{n}")
        headers.append(encode(decision, KEY))
        recent.remember(headers[-1], decision, now=0.0)
    assert len(recent) == 3
    assert recent.take(headers[0], KEY).request_id == "req_0"  # evicted: decoded instead
    expired = _decision("req_old", expires_at=10.0)
    fresh = _decision("req_new", expires_at=100.0)
    recent = RecentDecisions()
    recent.remember(encode(expired, KEY), expired, now=0.0)
    recent.remember(encode(fresh, KEY), fresh, now=50.0)  # the expired one goes
    assert len(recent) == 1


async def test_a_remembered_decision_equals_the_decoded_one_with_every_annotation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The callout's own Decision must be what decoding its header gives: the annotations the
    stages wrote (quota reservation, rate-limit header names, input masks …) compare equal."""
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    folder = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, folder)
    (folder / "guardrails.yaml").write_text("""\
guardrails:
  mask-in:
    type: pii
    categories: [email]
    action: mask
    direction: input
  opt-in-out:
    type: pii
    categories: [phone]
    action: mask
    direction: output
    default_on: false
""")
    app = init_app(Settings(policies_dir=folder, decision_key=KEY,
                            policy_poll_seconds=0))
    body = orjson.dumps({"model": "gpt-4", "guardrails": ["opt-in-out"], "response_format": {"type": "json_object"},
                         "messages": [{"role": "user", "content": "mail me at jane@example.com, as JSON"}]})
    check = await app[PIPELINE].decide(app[POLICY_STORE].current, body, f"Bearer {DEMO_TOKEN}", None)
    decision = check.decision(app[SETTINGS].decision_ttl_seconds)
    assert {"quota", "rate_limit_headers"} <= set(decision.extra)
    assert len(decision.extra) >= 4, decision.extra  # masks and the requested guardrail too
    header = encode(decision, KEY)
    recent = app[RECENT_DECISIONS]
    recent.remember(header, decision)
    taken = recent.take(header, KEY)
    assert taken is decision
    assert taken == decode(header, KEY)
    assert {name: taken.extra[name] for name in taken.extra} == orjson.loads(orjson.dumps(decision.extra))
