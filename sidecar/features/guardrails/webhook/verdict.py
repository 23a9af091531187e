"""What a guardrail makes of a detector's findings: the small interface both sides share.

In: the findings over a list of `(path, text)` pairs. Out: the findings that count (the policy's
`threshold` applied), whether they block, and the replacements by span for `mask`. A `mask`
guardrail blocks a finding that has no span: what it flags cannot be masked, and must not pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.core.errors import GuardrailBlocked, ServiceUnavailable
from sidecar.features.guardrails.masking import MaskNumbering
from sidecar.features.guardrails.webhook.client import CallResult
from sidecar.features.guardrails.webhook.wire import Finding


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...]  # the findings that count, in the detector's order
    action: str  # block | mask | log

    @property
    def blocks(self) -> bool:
        if self.action == "block":
            return bool(self.findings)
        return self.action == "mask" and any(f.span is None for f in self.findings)

    def replacements(self) -> dict[str, list[Finding]]:
        """For `mask`: per path, non-overlapping spanned findings by start (the earlier, then longer, wins)."""
        if self.action != "mask":
            return {}
        by_path: dict[str, list[Finding]] = {}
        for finding in sorted((f for f in self.findings if f.span is not None), key=_span_order):
            assert finding.span is not None
            kept = by_path.setdefault(finding.span.path, [])
            if not kept or _end(kept[-1]) <= finding.span.start:
                kept.append(finding)
        return by_path

    def blocked(self, guardrail: str, **where: object) -> GuardrailBlocked:
        """The contract's guardrail error; `where` adds fields to every finding (e.g. choice_index)."""
        return GuardrailBlocked(guardrail, "block", [{**f.public(), **where} for f in _distinct(self.findings)])


def judge(findings: Iterable[Finding], action: str, threshold: float | None) -> Verdict:
    counted = tuple(f for f in findings if threshold is None or f.score is None or f.score >= threshold)
    return Verdict(counted, action)


def masked(text: str, findings: Sequence[Finding], numbering: MaskNumbering) -> str:
    """`text` with each (non-overlapping, sorted) span replaced by the detector's replacement, or
    by a numbered placeholder `[CATEGORY_N]` (the same value gets the same one within a request)."""
    parts: list[str] = []
    cursor = 0
    for finding in findings:
        assert finding.span is not None
        start, end = finding.span.start, finding.span.end
        parts.append(text[cursor:start])
        parts.append(placeholder(finding, text[start:end], numbering))
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def placeholder(finding: Finding, value: str, numbering: MaskNumbering) -> str:
    return finding.replacement if finding.replacement is not None else numbering.placeholder(finding.category, value)


class GuardrailUnavailable(ServiceUnavailable):
    """`on_error: closed`: the detector could not answer, so the request is refused (503, Retry-After)."""

    default_code = "guardrail_unavailable"

    def __init__(self, guardrail: str, result: CallResult, what: str = "request") -> None:
        reason = result.error.value if result.error else "error"
        super().__init__(f"Guardrail '{guardrail}' could not check the {what} ({reason}); retry later",
                         headers={"Retry-After": result.retry_after_header()})
        self.guardrail_key = guardrail

    def error_object(self) -> dict[str, Any]:
        return {**super().error_object(), "guardrail_key": self.guardrail_key}


def _span_order(finding: Finding) -> tuple[str, int, int]:
    span = finding.span
    assert span is not None
    return span.path, span.start, -span.end


def _end(finding: Finding) -> int:
    assert finding.span is not None
    return finding.span.end


def _distinct(findings: Iterable[Finding]) -> list[Finding]:
    """One entry per category and path, as the built-in guardrails report one per category and message."""
    seen: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.category, finding.span.path if finding.span else None), finding)
    return list(seen.values())
