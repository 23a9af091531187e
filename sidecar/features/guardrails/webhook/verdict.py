"""What a guardrail makes of a detector's findings: the small interface both sides share.

In: the findings over the texts sent. Out: the findings that count (the policy's `threshold`
applied), whether they block, and for `mask` the replacements by span, as `masking.Replacement`s
(raw start, end, placeholder) that the walker's edits or `masking.replace_spans` apply (kept
valid JSON by `masking.json_safe` where the text is JSON). A `mask` guardrail blocks a finding
that has no span: what it flags cannot be masked, and must not pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sidecar.core.errors import GuardrailBlocked, GuardrailUnavailable
from sidecar.features.guardrails.masking import MaskNumbering, Replacement
from sidecar.features.guardrails.webhook.client import CallResult
from sidecar.features.guardrails.webhook.wire import Finding
from sidecar.policy.guardrails import Action


@dataclass(frozen=True)
class Verdict:
    """The findings of one call that count for one guardrail, and its action."""

    findings: tuple[Finding, ...]  # the findings that count, in the detector's order
    action: Action

    @property
    def blocks(self) -> bool:
        """`block` with a finding, or `mask` with a finding it cannot mask (no span)."""
        if self.action is Action.BLOCK:
            return bool(self.findings)
        return self.action is Action.MASK and any(f.span is None for f in self.findings)

    def replacements(self) -> dict[str, list[Finding]]:
        """For `mask`: per path, non-overlapping spanned findings by start (the earlier, then longer, wins)."""
        if self.action is not Action.MASK:
            return {}
        by_path: dict[str, list[Finding]] = {}
        for finding in sorted((f for f in self.findings if f.span is not None), key=_span_order):
            kept = by_path.setdefault(_path(finding), [])
            if not kept or _end(kept[-1]) <= _start(finding):
                kept.append(finding)
        return by_path

    def blocked(self, guardrail: str, **where: object) -> GuardrailBlocked:
        """The contract's guardrail error; `where` adds fields to every finding (e.g. role)."""
        return GuardrailBlocked(guardrail, Action.BLOCK, [{**f.public(), **where} for f in _distinct(self.findings)])


def judge(findings: Iterable[Finding], action: Action, threshold: float | None) -> Verdict:
    """The findings whose score reaches `threshold` (0.0-1.0; unscored findings always count)."""
    counted = tuple(f for f in findings if threshold is None or f.score is None or f.score >= threshold)
    return Verdict(counted, action)


def replacements(text: str, findings: Sequence[Finding], numbering: MaskNumbering,
                 taken: Sequence[Replacement] = ()) -> list[Replacement]:
    """The spans of `findings` (spanned, on `text`) as raw replacements, minus those overlapping
    `taken`: the detector's `replacement`, or a placeholder `[CATEGORY_N]` numbered per exchange
    (the same value gets the same one)."""
    out: list[Replacement] = []
    for finding in findings:
        start, end = _start(finding), _end(finding)
        if any(start < high and low < end for low, high, _ in (*taken, *out)):
            continue
        value = text[start:end]
        placeholder = finding.replacement if finding.replacement is not None else \
            numbering.placeholder(finding.category, value)
        out.append((start, end, placeholder))
    return out


def unavailable(guardrail: str, result: CallResult, what: str = "request") -> GuardrailUnavailable:
    """`on_error: closed`: the 503 naming the guardrail, with the breaker's (or 1 s) Retry-After, or
    `x-should-retry: false` when the detector refused this very request (a 4xx, `refused_for_good`)."""
    reason = result.error.value if result.error else "error"
    return GuardrailUnavailable(guardrail, reason, result.retry_after_seconds(), what,
                                retryable=not result.refused_for_good)


def _path(finding: Finding) -> str:
    assert finding.span is not None
    return finding.span.path


def _start(finding: Finding) -> int:
    assert finding.span is not None
    return finding.span.start


def _end(finding: Finding) -> int:
    assert finding.span is not None
    return finding.span.end


def _span_order(finding: Finding) -> tuple[str, int, int]:
    return _path(finding), _start(finding), -_end(finding)


def _distinct(findings: Iterable[Finding]) -> list[Finding]:
    """One entry per category and path, as the built-in guardrails report one per category and message."""
    seen: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.category, finding.span.path if finding.span else None), finding)
    return list(seen.values())
