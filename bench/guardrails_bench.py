"""Guardrail detector benchmark: ``python bench/guardrails_bench.py``.

Prints corpus precision/recall per category, injection figures at two
thresholds, the time to scan a 1 MB prompt of ordinary prose (median of 5)
and the stream scanner's cost per chunk.  Timings are informational only;
no test asserts on them.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CORPUS = ROOT / "tests" / "guardrails_corpus"
_WORD_TEXT = (
    "the of and to in is that it for was on are as with his they at be this from have or by one had not but what "
    "all were when we there can an your which their said if do will each about how up out them then she many some "
    "so these would other into has more her two like him see time could no make than first been its who now people "
    "my made over did down only way find use may water long little very after words called just where most know"
)
WORDS = _WORD_TEXT.split(" ")


def load(name: str) -> list[dict[str, Any]]:
    with (CORPUS / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def prose(size: int, seed: int = 1) -> str:
    """English-like prose with the odd year, price, time and section number."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize()
        roll = rng.random()
        if roll < 0.1:
            sentence += f" in {rng.randint(1990, 2030)}"
        elif roll < 0.15:
            sentence += f" for ${rng.randint(1, 999)}.{rng.randint(10, 99)}"
        elif roll < 0.2:
            sentence += f" at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}: see Section {rng.randint(1, 40)}"
        sentence += rng.choice([". ", ", ", "? ", ".\n"])
        parts.append(sentence)
        total += len(sentence)
    return "".join(parts)[:size]


def median_ms(func: Any, runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def stream_cost_us(text: str, chunk: int) -> float:
    from sidecar.core.entity import ALL_CATEGORIES
    from sidecar.features.guardrails.stream_scan import StreamScanner

    scanner = StreamScanner(ALL_CATEGORIES, mask=True)
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    start = time.perf_counter()
    for piece in chunks:
        scanner.feed(piece)
    scanner.finish()
    return (time.perf_counter() - start) / len(chunks) * 1e6


def output_chunk_cost_us(text: str, chunk: int) -> float:
    """The whole output path per content chunk with one PII mask guardrail (OutputGuardrails.on_chunk)."""
    from sidecar.core.entity import ALL_CATEGORIES
    from sidecar.features.guardrails.output_check import OutputGuardrails
    from sidecar.policy.guardrails import Action, Direction, Guardrail, GuardrailType

    guardrail = Guardrail(key="pii", type=GuardrailType.PII, action=Action.MASK, direction=Direction.OUTPUT,
                          categories=ALL_CATEGORIES)
    guard = OutputGuardrails([guardrail], "bench")
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": text[i:i + chunk]}, "finish_reason": None}]}
              for i in range(0, len(text), chunk)]
    start = time.perf_counter()
    for each in chunks:
        guard.on_chunk(each)
    guard.on_end()
    return (time.perf_counter() - start) / len(chunks) * 1e6


def main() -> None:
    # Imported here, after the sys.path tweak above.
    from sidecar.core.entity import ALL_CATEGORIES
    from sidecar.features.guardrails.pii import find_entities
    from sidecar.features.guardrails.quality import OVERALL, evaluate, evaluate_injection

    scores = evaluate(load("cases.jsonl"))
    print(f"{'category':<12} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8}")
    for category in [*sorted(ALL_CATEGORIES), OVERALL]:
        s = scores[category]
        print(f"{category:<12} {s.tp:>4} {s.fp:>4} {s.fn:>4} {s.precision:>10.4f} {s.recall:>8.4f}")

    injection = load("injection.jsonl")
    # Only the held-out batch was never used to adjust the rules.
    held_out = [case for case in injection if str(case.get("note", "")).startswith("held-out")]
    print()
    for label, cases in (("injection (all)", injection), ("injection (held-out)", held_out)):
        for threshold in (0.5, 0.7):
            s = evaluate_injection(cases, threshold)
            print(f"{label:<22} @{threshold}: precision {s.precision:.4f} recall {s.recall:.4f} (n={len(cases)})")

    text = prose(1_000_000)
    ms = median_ms(lambda: find_entities(text, ALL_CATEGORIES))
    print(f"\nfind_entities on 1 MB prose (median of 5): {ms:.1f} ms")
    line = "Mail john@example.com, call (415) 555-0132, card 4111 1111 1111 1111."
    dense = " ".join([line] * 14000)[:1_000_000]
    dense_ms = median_ms(lambda: find_entities(dense, ALL_CATEGORIES))
    print(f"find_entities on 1 MB PII-dense text (median of 5): {dense_ms:.1f} ms")

    sample = prose(20_000, seed=2) + dense[:20_000]
    for chunk in (1, 4, 16, 64):
        print(f"StreamScanner(mask=True) per chunk of {chunk:>2} chars: {stream_cost_us(sample, chunk):.1f} us")
    for chunk in (4, 16, 64):
        print(f"output guardrail per stream chunk of {chunk:>2} chars (walker, per-field window, logprobs): "
              f"{output_chunk_cost_us(sample, chunk):.1f} us")


if __name__ == "__main__":
    main()
