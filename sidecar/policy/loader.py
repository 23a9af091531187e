"""Loads a policy folder into one immutable Policy, or raises PolicyError listing every problem."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from sidecar.core.limits import LimitsPolicy
from sidecar.core.routes import BreakerConfig, ModelRegistry
from sidecar.core.tokens import TokenStore
from sidecar.policy.breaker_schema import parse_breaker
from sidecar.policy.guardrails import GuardrailSet
from sidecar.policy.guardrails_schema import parse_guardrails
from sidecar.policy.limits_schema import parse_limits
from sidecar.policy.models_schema import parse_models, parse_providers
from sidecar.policy.reader import ErrorLog, Located, PolicyError
from sidecar.policy.references import check_guardrail_scopes, defined_names
from sidecar.policy.snapshot import Policy
from sidecar.policy.tokens_schema import parse_tokens

SECTIONS = ("tokens", "providers", "models", "breaker", "guardrails", "limits")


def policy_files(folder: Path) -> list[Path]:
    """Top-level *.yaml/*.yml files; hidden entries (a ConfigMap's `..data`) are skipped."""
    return sorted(
        p for p in folder.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def read_files(folder: Path) -> tuple[list[tuple[Path, bytes]], str]:
    """The policy files' contents and their version: a content hash, so the same files give the
    same version on every sidecar, and a touched-but-unchanged file is no change at all."""
    digest = hashlib.sha256()
    files = []
    for path in policy_files(folder):
        try:
            text = path.read_bytes()
        except OSError as exc:  # e.g. removed by a ConfigMap swap between listing and reading
            text = f"\0unreadable: {exc.strerror}".encode()
        digest.update(path.name.encode() + b"\0" + text + b"\0")
        files.append((path, text))
    return files, digest.hexdigest()[:12]


def folder_version(folder: Path) -> str:
    """What `load_policy(folder).version` would be, without parsing; "absent" for a missing folder."""
    try:
        return read_files(folder)[1]
    except OSError:
        return "absent"


def load_policy(folder: Path) -> Policy:
    """A policy folder's *.yaml/*.yml files -> one immutable Policy; raises PolicyError listing every `FILE:LINE:
    key.path: message`.
    """
    if not folder.is_dir():
        raise PolicyError([f"{folder}: not a directory"])
    log = ErrorLog()
    sections: dict[str, Located] = {}
    files, version = read_files(folder)
    if not files:
        # An emptied ConfigMap must not hot-reload into a gateway that knows no tokens or models.
        raise PolicyError([f"{folder}: no policy files (*.yaml, *.yml)"])
    for path, text in files:
        _collect_sections(path, text, sections, log)
    policy = _build(folder, sections, version, log)
    if log.errors:
        raise PolicyError(log.errors)
    return policy


def _collect_sections(path: Path, text: bytes, sections: dict[str, Located], log: ErrorLog) -> None:
    name = str(path)
    try:
        root = _compose(text.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        if isinstance(exc, UnicodeDecodeError):
            line = text[:exc.start].count(b"\n") + 1
        problem = getattr(exc, "problem", None) or exc
        if isinstance(exc, yaml.composer.ComposerError):  # e.g. a second `---` document
            problem = f"{exc.context}, {problem}"
        log.errors.append(f"{name}:{line}: (file): not valid YAML: {problem}")
        return
    if root is None:
        log.errors.append(f"{name}:1: (file): empty file; a policy file holds at least one section")
        return
    top = Located(name, root, "", log).mapping()
    if top is None:
        return
    for key, where in top.named():
        if key not in SECTIONS:
            where.error(f"unknown section (known: {', '.join(SECTIONS)})")
        elif key in sections:
            earlier = sections[key]
            where.error(f"section also defined in {earlier.file}:{earlier.node.start_mark.line + 1}")
        else:
            sections[key] = where


def _build(folder: Path, sections: dict[str, Located], version: str, log: ErrorLog) -> Policy:
    breaker = parse_breaker(sections["breaker"], BreakerConfig()) if "breaker" in sections else BreakerConfig()
    providers = parse_providers(sections["providers"], breaker) if "providers" in sections else {}
    models = (parse_models(sections["models"], providers, defined_names(sections.get("providers")))
              if "models" in sections else ModelRegistry({}))
    tokens = (parse_tokens(sections["tokens"], defined_names(sections.get("models")))
              if "tokens" in sections else TokenStore({}))
    guardrails = parse_guardrails(sections["guardrails"]) if "guardrails" in sections else GuardrailSet()
    check_guardrail_scopes(sections.get("guardrails"), sections.get("models"), sections.get("tokens"), tokens)
    limits = parse_limits(sections["limits"], tokens, models) if "limits" in sections else LimitsPolicy()
    return Policy(version=version, source=str(folder), tokens=tokens, models=models, guardrails=guardrails,
                  limits=limits)


def _compose(text: str) -> yaml.Node | None:
    """libyaml's parser when present (about 9x faster on a policy with thousands of tokens); on an
    error the pure-Python parser runs again for its clearer message."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            node: yaml.Node | None = yaml.compose(text, Loader=fast)
            return node
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)
