"""What binding the body costs the hand-off: SHA-256 of the body in the callout and again on the
forwarding path, plus signing and checking the decision, for 1 KB and 1 MB bodies."""

from __future__ import annotations

import time
from collections.abc import Callable

from sidecar.callout.handoff import Decision, body_digest, decode, encode, verify

_KEY = b"k" * 32


def _best_us(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            run()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1e6


def digest_costs() -> dict[str, tuple[float, float]]:
    """Size label -> (µs for one SHA-256, µs for the whole hand-off: digest, sign, decode, verify)."""
    figures = {}
    for label, size, repeat in (("1 KB", 1024, 2000), ("1 MB", 1024 * 1024, 20)):
        body = b"x" * size

        def hand_off(body: bytes = body) -> None:
            decision = Decision(request_id="req_1", token_name="t", team=None, model_key="gpt-4",
                                deployments=("a/b",), stream=False, client_wants_usage=False, policy_version="v",
                                body_sha256=body_digest(body), expires_at=time.time() + 10)
            verify(decode(encode(decision, _KEY), _KEY), body)

        figures[label] = (_best_us(lambda body=body: body_digest(body), repeat), _best_us(hand_off, repeat))
    return figures


if __name__ == "__main__":
    for label, (digest_us, total_us) in digest_costs().items():
        print(f"{label}: SHA-256 {digest_us:.1f} µs; digest + sign + decode + verify {total_us:.1f} µs")
