"""The callout's whole input scan of a 1 MB prompt: PII detection plus the injection heuristic.

bench/guardrails_bench.py times the PII detector alone; a request with the demo guardrails
pays for both, once each, so this is the figure to hold against "a 1 MB prompt in ≤ 50 ms".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.payload import prose

TARGET_MS = 50.0


def _median_ms(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def input_scan_ms(size: int = 1_000_000) -> dict[str, float] | None:
    """Median milliseconds per part, or None when this sidecar has no guardrails.

    `walk` is reading the request through the exchange walker into the normalised views the
    detectors read (sidecar.core.walk + features/guardrails/view.py); `total` adds it.
    """
    try:
        from sidecar.core.entity import ALL_CATEGORIES
        from sidecar.core.walk import request_texts
        from sidecar.features.guardrails.injection import score_injection
        from sidecar.features.guardrails.pii import find_entities
        from sidecar.features.guardrails.view import view_of
    except ImportError:
        return None
    body = {"model": "m", "messages": [{"role": "user", "content": prose(size)}]}

    def walk() -> list[str]:
        return [view_of(t.text, json=t.field.is_json).text for t in request_texts(body)]

    (text,) = walk()
    walked = _median_ms(walk)
    pii = _median_ms(lambda: find_entities(text, ALL_CATEGORIES))
    injection = _median_ms(lambda: score_injection(text))
    return {"walk": walked, "pii": pii, "injection": injection, "total": walked + pii + injection}
