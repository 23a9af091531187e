"""Loads a policy folder into one immutable Policy, or raises PolicyError listing every problem."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from sidecar.breaker import BreakerConfig
from sidecar.models import ModelRegistry
from sidecar.policy.breaker_schema import parse_breaker
from sidecar.policy.models_schema import parse_models, parse_providers
from sidecar.policy.reader import ErrorLog, Located, PolicyError
from sidecar.policy.snapshot import Policy
from sidecar.policy.tokens_schema import parse_tokens
from sidecar.tokens import TokenStore

SECTIONS = ("tokens", "providers", "models", "breaker")


def policy_files(folder: Path) -> list[Path]:
    """Top-level *.yaml/*.yml files; hidden entries (a ConfigMap's `..data`) are skipped."""
    return sorted(
        p for p in folder.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def load_policy(folder: Path) -> Policy:
    if not folder.is_dir():
        raise PolicyError([f"{folder}: not a directory"])
    log = ErrorLog()
    sections: dict[str, Located] = {}
    digest = hashlib.sha256()
    for path in policy_files(folder):
        text = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + text + b"\0")
        _collect_sections(path, text, sections, log)
    policy = _build(folder, sections, digest.hexdigest()[:12], log)
    if log.errors:
        raise PolicyError(log.errors)
    return policy


def _collect_sections(path: Path, text: bytes, sections: dict[str, Located], log: ErrorLog) -> None:
    name = str(path)
    try:
        root = yaml.compose(text.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        log.errors.append(f"{name}:{line}: (file): not valid YAML: {getattr(exc, 'problem', exc)}")
        return
    if root is None:
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
    models = parse_models(sections["models"], providers) if "models" in sections else ModelRegistry({})
    tokens = parse_tokens(sections["tokens"]) if "tokens" in sections else TokenStore({})
    _check_token_models(sections.get("tokens"), tokens, models)
    return Policy(version=version, source=str(folder), tokens=tokens, models=models)


def _check_token_models(where: Located | None, tokens: TokenStore, models: ModelRegistry) -> None:
    if where is None:
        return
    for record in tokens.by_hash.values():
        for key in sorted(record.models or ()):
            if key not in models.routes:
                where.log.add(where.file, where.node, f"tokens.{record.name}.models",
                              f"unknown model '{key}'")
