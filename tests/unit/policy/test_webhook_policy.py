"""`type: webhook` guardrail keys: defaults, every key, and the errors a policy author sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.core.credentials import Credential
from sidecar.core.guardrail_webhook import DEFAULT_BREAKER, OnError
from sidecar.policy.guardrails import Guardrail
from sidecar.policy.loader import load_policy
from sidecar.policy.reader import PolicyError

REPO = Path(__file__).resolve().parents[3]


def load(tmp_path: Path, guardrails: str) -> list[Guardrail]:
    for name in ("models.yaml", "tokens.yaml"):
        (tmp_path / name).write_text((REPO / "policies" / name).read_text())
    (tmp_path / "guardrails.yaml").write_text("guardrails:\n" + guardrails)
    return list(load_policy(tmp_path).guardrails.guardrails)


def errors(tmp_path: Path, guardrails: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, guardrails)
    return [e.split(": ", 1)[1] for e in caught.value.errors]


def test_defaults(tmp_path: Path) -> None:
    [guardrail] = load(tmp_path, "  det:\n    type: webhook\n    url: http://127.0.0.1:9/check\n    action: block\n")
    webhook = guardrail.webhook
    assert webhook is not None and not guardrail.checks_input and not guardrail.checks_output
    assert (webhook.url, webhook.timeout, webhook.connect_timeout, webhook.on_error) == (
        "http://127.0.0.1:9/check", 0.5, 0.25, OnError.CLOSED)
    assert (webhook.threshold, webhook.max_connections, webhook.stream_chars, webhook.breaker) == (
        None, 32, 512, DEFAULT_BREAKER)


def test_log_fails_open_by_default(tmp_path: Path) -> None:
    [guardrail] = load(tmp_path, "  det:\n    type: webhook\n    url: http://d/check\n    action: log\n")
    assert guardrail.webhook is not None and guardrail.webhook.on_error is OnError.OPEN


def test_every_key(tmp_path: Path) -> None:
    [guardrail] = load(tmp_path, """\
  det:
    type: webhook
    url: https://detector.internal/v1/check
    api_key: {env: DETECTOR_KEY}
    headers: {X-Team: payments, X-Api-Key: {file: /run/secrets/detector}}
    timeout: {connect: 50ms, total: 2s}
    on_error: open
    threshold: 0.8
    max_connections: 4
    stream_chars: 256
    breaker: {consecutive_failures: 1, cooldown: 1m}
    action: mask
    direction: both
    messages: user
    default_on: false
    hold_back: 32
    scope: {models: [gpt-4]}
""")
    webhook = guardrail.webhook
    assert webhook is not None
    assert (webhook.api_key, dict(webhook.headers)) == (
        Credential(env="DETECTOR_KEY"), {"X-Team": "payments", "X-Api-Key": Credential(file=Path("/run/secrets/detector"))})
    assert (webhook.connect_timeout, webhook.timeout, webhook.on_error, webhook.threshold) == (0.05, 2.0, OnError.OPEN, 0.8)
    assert (webhook.max_connections, webhook.stream_chars) == (4, 256)
    assert (webhook.breaker.consecutive_failures, webhook.breaker.cooldown) == (1, 60.0)
    assert (guardrail.action, guardrail.direction, guardrail.messages, guardrail.default_on, guardrail.hold_back) == (
        "mask", "both", "user", False, 32)
    assert isinstance(hash(guardrail), int)  # frozen policy objects stay hashable


def test_a_bare_duration_is_the_whole_call(tmp_path: Path) -> None:
    [guardrail] = load(tmp_path, "  det: {type: webhook, url: 'http://d/c', action: log, timeout: 100ms}\n")
    assert guardrail.webhook is not None
    assert (guardrail.webhook.timeout, guardrail.webhook.connect_timeout) == (0.1, 0.1)


@pytest.mark.parametrize(("entry", "message"), [
    ("{type: webhook, action: block}", "guardrails.det.url: is required"),
    ("{type: webhook, url: 'ftp://d', action: block}", "guardrails.det.url: must start with http:// or https://"),
    ("{type: webhook, url: 'http://d', action: block, on_error: maybe}",
     "guardrails.det.on_error: must be one of open, closed"),
    ("{type: webhook, url: 'http://d', action: block, threshold: 2}",
     "guardrails.det.threshold: must be between 0.0 and 1.0"),
    ("{type: webhook, url: 'http://d', action: block, timeout: 0s}", "guardrails.det.timeout: must be longer than zero"),
    ("{type: webhook, url: 'http://d', action: block, timeout: {total: 1s, idle: 1s}}",
     "guardrails.det.timeout.idle: unknown key"),
    ("{type: webhook, url: 'http://d', action: block, api_key: {env: A, file: B}}",
     "guardrails.det.api_key: give exactly one of env (a variable name) or file (a mounted secret's path)"),
    ("{type: webhook, url: 'http://d', action: block, categories: [email]}",
     "guardrails.det.categories: only pii guardrails take categories"),
    ("{type: pii, action: block, url: 'http://d'}", "guardrails.det.url: only webhook guardrails take url"),
    ("{type: webhook, url: 'http://d', action: block, max_connections: 0}",
     "guardrails.det.max_connections: must be at least 1"),
])
def test_errors_name_the_key(tmp_path: Path, entry: str, message: str) -> None:
    assert message in errors(tmp_path, f"  det: {entry}\n")
