"""A stack for the status page tests: demo policies with guardrails and a daily token quota."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.quota_support import ZONE
from tests.e2e.stacks import REPO, write_test_policies

QUOTA = 1_000_000  # tokens per day for `demo`: far above what the tests send


def write_status_policies(folder: Path) -> Path:
    write_test_policies(folder)
    shutil.copy(REPO / "policies" / "guardrails.yaml", folder / "guardrails.yaml")
    (folder / "limits.yaml").write_text(f"""
limits:
  timezone: {ZONE}
  rules:
    daily: {{match: {{tokens: [demo]}}, tokens_per_day: {QUOTA}}}
    rpm: {{requests_per_minute: 1000}}
""", encoding="utf-8")
    return folder


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def status_json(base: str) -> dict[str, Any]:
    status, _, body = get(base + "/status.json")
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def limit_of(status: dict[str, Any], token: str, limit: str) -> dict[str, Any]:
    entry = next(t for t in status["tokens"] if t["name"] == token)
    found: dict[str, Any] = next(lm for lm in entry["limits"] if lm["limit"] == limit)
    return found
