"""Provider credentials: environment variables, mounted files re-read on change, never shown."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from sidecar.core import credentials
from sidecar.core.credentials import Credential

SECRET = "sk-very-secret-value"


class Clock:
    """A controllable stand-in for time.monotonic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    # Only the module's view of the clock: the real time.monotonic stays untouched for everything else.
    monkeypatch.setattr(credentials, "time", SimpleNamespace(monotonic=fake))
    return fake


def rewrite(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_env_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIT_TEST_API_KEY", SECRET)
    assert Credential(env="UNIT_TEST_API_KEY").value() == SECRET


def test_env_credential_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    credential = Credential(env="UNIT_TEST_API_KEY")
    monkeypatch.setenv("UNIT_TEST_API_KEY", "first")
    assert credential.value() == "first"
    monkeypatch.setenv("UNIT_TEST_API_KEY", "second")
    assert credential.value() == "second"


@pytest.mark.parametrize("value", [None, ""])
def test_env_credential_unset_or_empty_is_none(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("UNIT_TEST_API_KEY", raising=False)
    else:
        monkeypatch.setenv("UNIT_TEST_API_KEY", value)
    assert Credential(env="UNIT_TEST_API_KEY").value() is None


def test_no_credential_is_none() -> None:
    assert Credential().value() is None


def test_file_credential_is_stripped(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    path.write_text(f"  {SECRET}\n", encoding="utf-8")
    assert Credential(file=path).value() == SECRET


def test_empty_file_is_none(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    path.write_text("\n", encoding="utf-8")
    assert Credential(file=path).value() is None


def test_missing_file_is_none(tmp_path: Path, clock: Clock) -> None:
    assert Credential(file=tmp_path / "absent").value() is None


def test_file_reread_after_it_changes(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    rewrite(path, "old-key", 1_000_000_000)
    credential = Credential(file=path)
    assert credential.value() == "old-key"
    rewrite(path, "new-key", 2_000_000_000)
    # Within the recheck interval the cached value stands (no stat on every request) ...
    clock.now += credentials._RECHECK_SECONDS / 2
    assert credential.value() == "old-key"
    # ... and once it has passed, the rotated file is read.
    clock.now += credentials._RECHECK_SECONDS
    assert credential.value() == "new-key"


def test_file_not_reread_when_mtime_is_unchanged(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    rewrite(path, "old-key", 1_000_000_000)
    credential = Credential(file=path)
    assert credential.value() == "old-key"
    rewrite(path, "same-mtime", 1_000_000_000)
    clock.now += 10 * credentials._RECHECK_SECONDS
    assert credential.value() == "old-key"


def test_file_that_appears_later_is_picked_up(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    credential = Credential(file=path)
    assert credential.value() is None
    rewrite(path, "late-key", 3_000_000_000)
    clock.now += 2 * credentials._RECHECK_SECONDS
    assert credential.value() == "late-key"


def test_file_that_disappears_gives_none(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    rewrite(path, "key", 1_000_000_000)
    credential = Credential(file=path)
    assert credential.value() == "key"
    path.unlink()
    clock.now += 2 * credentials._RECHECK_SECONDS
    assert credential.value() is None


def test_file_reread_with_recheck_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "_RECHECK_SECONDS", 0.0)
    path = tmp_path / "key"
    rewrite(path, "one", 1_000_000_000)
    credential = Credential(file=path)
    assert credential.value() == "one"
    rewrite(path, "two", 2_000_000_000)
    assert credential.value() == "two"


def test_repr_never_contains_the_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.setenv("UNIT_TEST_API_KEY", SECRET)
    path = tmp_path / "key"
    path.write_text(SECRET, encoding="utf-8")
    env_credential, file_credential = Credential(env="UNIT_TEST_API_KEY"), Credential(file=path)
    assert env_credential.value() == SECRET and file_credential.value() == SECRET  # cache now holds it
    assert repr(env_credential) == "Credential(env:UNIT_TEST_API_KEY)"
    assert repr(file_credential) == f"Credential(file:{path})"
    assert repr(Credential()) == "Credential(none)"
    for credential in (env_credential, file_credential):
        assert SECRET not in repr(credential)
        assert SECRET not in str(credential)
        assert SECRET not in f"{credential!r} {[credential]}"


def test_equality_ignores_the_cache(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "key"
    path.write_text("k", encoding="utf-8")
    warm = Credential(file=path)
    warm.value()
    assert warm == Credential(file=path)
