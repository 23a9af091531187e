"""The `explain` command's arguments and its two outputs: a readable report, or one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from sidecar.cli.explain import SHOWN_SECTIONS, Explanation, explain
from sidecar.core.endpoints import EndpointKind
from sidecar.policy.loader import load_policy
from sidecar.policy.reader import PolicyError
from sidecar.policy.summary import report_errors
from sidecar.settings import Settings

_WIDTH = 12
# What an empty section means, for the sections every explanation shows.
_EMPTY = MappingProxyType({"guardrails": "none fired", "limits": "none apply", "breaker": "no state recorded"})


def add_parser(sub: Any) -> None:
    """Adds the `explain` subcommand to the CLI's subparsers."""
    parser = sub.add_parser("explain", help="dry-run one request: what would the gateway decide, and why")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="the client's token (cgt_…)")
    who.add_argument("--token-name", help="a token's name in the policy (for when you hold only its hash)")
    parser.add_argument("--body", required=True,
                        help="file with a chat completion or embeddings request body (- for stdin)")
    parser.add_argument("--endpoint", choices=[EndpointKind.CHAT.value, EndpointKind.EMBEDDINGS.value],
                        help="which endpoint the body is for (default: embeddings when it has `input` "
                             "and no `messages`, else chat)")
    parser.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    parser.add_argument("dir", nargs="?", help="policy folder (default: GATEWAY_POLICIES or ./policies)")
    parser.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    """Exit 0 with the decision (allowed or denied), 1 if the policy is invalid, 2 if the body is unreadable."""
    settings = Settings.from_env()
    folder = Path(args.dir) if args.dir else settings.policies_dir
    try:
        raw_body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    except OSError as exc:
        print(f"cannot read --body {args.body}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        policy = load_policy(folder)
    except PolicyError as exc:
        report_errors(folder, exc)
        return 1
    endpoint = EndpointKind(args.endpoint) if args.endpoint else None
    explanation = asyncio.run(explain(settings, policy, raw_body, token=args.token, token_name=args.token_name,
                                      endpoint=endpoint))
    if args.json:
        sys.stdout.write(orjson.dumps(explanation.as_json()).decode() + "\n")
    else:
        sys.stdout.write(render(explanation))
    return 0


def render(e: Explanation) -> str:
    """The explanation as aligned text lines, one `name  value` row per fact."""
    lines = [
        _row("policy", f"{e.policy_source} (version {e.policy_version})"),
        _row("request", f"{e.request_id} (dry run: no provider called, no quota used)"),
        _row("token", f"{e.token['name']} (team {e.token['team'] or '-'})" if e.token else "-"),
        _row("model", _model(e.model) if e.model else f"{e.requested_model or '-'} (as requested)"),
    ]
    trace = dict(e.trace)
    for section in SHOWN_SECTIONS:
        lines += _section(section, trace.pop(section, None))
    for section, value in trace.items():
        lines += _section(section, value)
    verdict = "allowed" if e.allowed else f"denied ({e.code})"
    lines.append(_row("status", f"{e.status} {verdict}"))
    for name, value in sorted(e.headers.items()):
        lines.append(_row("header", f"{name}: {value}"))
    if e.provider_url:
        lines.append(_row("provider", f"POST {e.provider_url}"))
    body = orjson.dumps(e.body, option=orjson.OPT_INDENT_2).decode()
    lines.append(_row("body", body.replace("\n", "\n" + " " * _WIDTH)))
    return "\n".join(lines) + "\n"


def _row(label: str, text: str) -> str:
    return f"{label:<{_WIDTH - 1}} {text}"


def _model(model: dict[str, Any]) -> str:
    deployments = model["deployments"]
    served = f" → {deployments[0]}" if deployments else ""
    fallbacks = f" (then {', '.join(deployments[1:])})" if len(deployments) > 1 else ""
    return f"{model['key']} ({model['category']}){served}{fallbacks}"


def _section(name: str, value: Any) -> list[str]:
    """Stages record JSON-able findings; lists print one entry per line, mappings one key per line."""
    if not value:
        return [_row(name, _EMPTY.get(name, "none"))]
    if isinstance(value, dict):
        # A list of records (e.g. each applicable limit) gets a line per record.
        entries = [f"{k}: {_flat(item)}" for k, v in value.items()
                   for item in (v if isinstance(v, list) and v and all(isinstance(i, dict) for i in v) else [v])]
    elif isinstance(value, list):
        entries = [_flat(v) for v in value]
    else:
        entries = [_flat(value)]
    return [_row(name if i == 0 else "", entry) for i, entry in enumerate(entries)]


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return str(value)
