"""The pre-filter's start (`first_trigger`) and the vendor prefix hints never change what it finds."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sidecar.features.guardrails import pii

CORPUS = Path(__file__).resolve().parents[3] / "guardrails_corpus"
PIECES = ["a", "b", " ", "A", "Z", "K", "S", "KIA", "SIA", "AKIA", "DE", "89", "0", "7", "@", ":", ".", "-", "-----BEGIN",
          " RSA PRIVATE KEY-----", "x", "xox", "sk-", "eyJ", "J", "_", "ghp_", "é", "电话", "\n", "fe80::1", "mail.com"]


def texts() -> list[str]:
    rng = random.Random(5)
    lines = (CORPUS / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    out = [json.loads(line)["text"] for line in lines if line.strip()]
    out.extend("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 30))) for _ in range(3000))
    return out


def test_prefilter_from_first_trigger_finds_what_a_full_scan_finds() -> None:
    for text in texts():
        full = [(m.start(), m.end(), m.lastgroup) for m in pii._PREFILTER.finditer(text)]
        start = pii.first_trigger(text)
        fast = [] if start == -1 else [(m.start(), m.end(), m.lastgroup) for m in pii._PREFILTER.finditer(text, start)]
        assert fast == full, text


def test_vendor_hints_are_held_by_their_prefixes() -> None:
    for prefix, hint in pii._PREFIX_HINTS.items():
        assert hint in prefix and prefix in pii._PLAIN_PREFIXES

