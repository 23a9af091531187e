"""Hot reload: valid changes swap in, invalid ones keep the last good snapshot and are reported."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sidecar.features.observability.metrics import GatewayMetrics
from sidecar.policy.loader import load_policy
from sidecar.policy.store import PolicyStore
from sidecar.policy.watcher import PolicyWatcher, Scan
from tests.configmap import ConfigMapVolume

REPO = Path(__file__).resolve().parents[3]
MODELS = (REPO / "policies" / "models.yaml").read_text(encoding="utf-8")
TOKENS = (REPO / "policies" / "tokens.yaml").read_text(encoding="utf-8")
BROKEN_TOKENS = TOKENS + "    colour: blue\n"


def good(extra_comment: str = "") -> dict[str, str]:
    return {"models.yaml": MODELS, "tokens.yaml": TOKENS + extra_comment}


@pytest.fixture
def volume(tmp_path: Path) -> ConfigMapVolume:
    volume = ConfigMapVolume(tmp_path / "policies")
    volume.publish(good())
    return volume


@pytest.fixture
def watcher(volume: ConfigMapVolume) -> PolicyWatcher:
    store = PolicyStore(load_policy(volume.folder))
    metrics = GatewayMetrics()
    metrics.policy_loaded(store.current.version, 0.0)  # as install_observability does at startup
    return PolicyWatcher(volume.folder, store, metrics)


def sample(watcher: PolicyWatcher, name: str, **labels: str) -> float | None:
    metrics = watcher.metrics
    assert isinstance(metrics, GatewayMetrics)
    value: float | None = metrics.registry.get_sample_value(name, labels)
    return value


def test_configmap_layout_is_what_the_kubelet_builds(volume: ConfigMapVolume) -> None:
    data = volume.folder / "..data"
    assert data.is_symlink() and (volume.folder / "tokens.yaml").is_symlink()
    assert (volume.folder / "tokens.yaml").resolve().parent == (volume.folder / str(data.readlink())).resolve()


def test_nothing_changed_is_no_reload(watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    version = watcher.store.current.version
    volume.publish(good())  # a new ..data directory with the same content
    assert watcher.check_once() == "unchanged"
    assert watcher.store.current.version == version
    assert sample(watcher, "gateway_policy_reloads_total", outcome="success") is None


def test_configmap_symlink_swap_is_reloaded(watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    before = watcher.store.current
    volume.publish(good("# rotated\n"))
    assert watcher.check_once() == "reloaded"
    after = watcher.store.current
    assert after.version != before.version
    assert after.version == load_policy(volume.folder).version
    assert watcher.store.get(before.version) is before  # in-flight requests still find their snapshot
    assert sample(watcher, "gateway_policy_reloads_total", outcome="success") == 1
    assert sample(watcher, "gateway_policy_info", version=after.version) == 1
    assert watcher.check_once() == "unchanged"


def test_invalid_change_keeps_the_last_good_policy_and_logs_every_error(
        watcher: PolicyWatcher, volume: ConfigMapVolume, caplog: pytest.LogCaptureFixture) -> None:
    serving = watcher.store.current
    volume.publish({"models.yaml": MODELS.replace("type: openai", "type: bedrock"), "tokens.yaml": BROKEN_TOKENS})
    with caplog.at_level(logging.INFO, logger="sidecar.policy"):
        assert watcher.check_once() == "rejected"
    assert watcher.store.current is serving
    errors = [r.fields["error"] for r in caplog.records if r.getMessage() == "policy error"]  # type: ignore[attr-defined]
    assert [e.split(": ", 1)[1] for e in errors] == [
        "providers.demo.type: must be one of anthropic, azure, openai",
        "tokens.demo.colour: unknown key",
    ]
    assert errors[0].startswith(f"{volume.folder}/models.yaml:")
    assert sample(watcher, "gateway_policy_reloads_total", outcome="failure") == 1
    assert sample(watcher, "gateway_policy_reload_errors") == 2
    assert sample(watcher, "gateway_policy_info", version=serving.version) == 1
    caplog.clear()
    assert watcher.check_once() == "unchanged"  # the same broken content is reported once
    assert caplog.records == []
    assert sample(watcher, "gateway_policy_reloads_total", outcome="failure") == 1


def test_fixing_a_rejected_change_reloads_and_clears_the_error_gauge(
        watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    volume.publish({"models.yaml": MODELS, "tokens.yaml": BROKEN_TOKENS})
    assert watcher.check_once() == "rejected"
    volume.publish(good("# fixed\n"))
    assert watcher.check_once() == "reloaded"
    assert sample(watcher, "gateway_policy_reload_errors") == 0


def test_putting_the_serving_policy_back_clears_the_rejection(watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    serving = watcher.store.current
    volume.publish({"models.yaml": MODELS, "tokens.yaml": BROKEN_TOKENS})
    assert watcher.check_once() == "rejected"
    volume.publish(good())
    assert watcher.check_once() == "restored"
    assert watcher.store.current is serving
    assert sample(watcher, "gateway_policy_reload_errors") == 0


def test_removing_every_file_is_rejected(watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    serving = watcher.store.current
    volume.publish({"notes.txt": "emptied by mistake\n"})
    assert watcher.check_once() == "rejected"
    assert watcher.store.current is serving


def test_files_changing_while_read_are_looked_at_again(watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    serving = watcher.store.current
    volume.publish(good("# next\n"))
    scan = watcher.scan()
    assert scan.policy is not None and not scan.settling
    assert watcher.apply(Scan(scan.seen, policy=scan.policy, settling=True)) == "settling"
    assert watcher.store.current is serving
    assert watcher.check_once() == "reloaded"


async def test_the_polling_loop_picks_up_a_change(watcher: PolicyWatcher, volume: ConfigMapVolume) -> None:
    before = watcher.store.current.version
    task = asyncio.create_task(watcher.run(0.01))
    try:
        volume.publish(good("# polled\n"))
        for _ in range(500):
            if watcher.store.current.version != before:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert watcher.store.current.version == load_policy(volume.folder).version != before
