"""Suite-wide: say loudly, at the end of every run, which tests a missing tool kept from running."""

from __future__ import annotations

from _pytest.terminal import TerminalReporter

from tests.tools import MISSING_PREFIX


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        if MISSING_PREFIX in reason:
            key = reason[reason.index(MISSING_PREFIX):]
            reasons[key] = reasons.get(key, 0) + 1
    if not reasons:
        return
    terminalreporter.write_sep("!", "NOT RUN: tools missing on this machine", red=True, bold=True)
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count:4d} tests not run: {reason}", red=True, bold=True)
    terminalreporter.write_line("install them (.ci/install-tools does) and run `make test` again", red=True, bold=True)
