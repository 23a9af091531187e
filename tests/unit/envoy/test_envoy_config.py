"""envoy_config.render: every placeholder filled from Settings, and the Envoy YAML's key settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.envoy.config import TEMPLATE_PATH, render
from sidecar.settings import SENTINEL_503, Settings

SETTINGS = Settings(listen_address="0.0.0.0", listen_port=18080, sidecar_port=18081, admin_port=19901,
                    max_body_bytes=3_000_000, authz_timeout_seconds=7.5, drain_seconds=13,
                    request_headers_timeout_seconds=4.0, request_timeout_seconds=33.0,
                    envoy_max_heap_bytes=512 * 1024 * 1024, envoy_max_connections=777)


@pytest.fixture(scope="module")
def text() -> str:
    return render(SETTINGS)


@pytest.fixture(scope="module")
def config(text: str) -> dict[str, Any]:
    parsed = yaml.safe_load(text)
    assert isinstance(parsed, dict)
    return parsed


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]  # the client listener; [1] is `metrics`
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    typed: dict[str, Any] = manager["typed_config"]
    return typed


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [f for f in hcm(config)["http_filters"] if f["name"] == name]
    typed: dict[str, Any] = found["typed_config"]
    return typed


def test_template_exists() -> None:
    assert TEMPLATE_PATH.is_file()


def test_no_placeholder_left(text: str) -> None:
    assert "${" not in text
    assert "$" not in text.replace("$$", "")


def test_listener_address_and_ports(config: dict[str, Any]) -> None:
    listener = config["static_resources"]["listeners"][0]  # the client listener; [1] is `metrics`
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 18080}
    assert listener["per_connection_buffer_limit_bytes"] == 3_000_000 + 1024 * 1024


def test_admin_bound_to_loopback(config: dict[str, Any]) -> None:
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}


def test_sidecar_cluster_port(config: dict[str, Any]) -> None:
    cluster = config["static_resources"]["clusters"][0]  # [1] is `envoy_admin`
    assert cluster["name"] == "sidecar"
    assert cluster["per_connection_buffer_limit_bytes"] == 3_000_000 + 1024 * 1024
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = endpoints["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18081}


def test_chat_route_has_no_timeout(config: dict[str, Any]) -> None:
    (host,) = hcm(config)["route_config"]["virtual_hosts"]
    (chat,) = [r for r in host["routes"] if r["name"] == "chat_completions"]
    assert chat["match"]["path"] == "/api/client/v1/chat/completions"
    assert chat["route"] == {"cluster": "sidecar", "timeout": "0s"}


def test_ext_authz_fails_closed_with_whole_body(config: dict[str, Any]) -> None:
    authz = http_filter(config, "envoy.filters.http.ext_authz")
    assert authz["failure_mode_allow"] is False
    assert authz["with_request_body"] == {"max_request_bytes": 3_000_000, "allow_partial_message": False}
    service = authz["http_service"]
    assert service["server_uri"] == {"uri": "http://127.0.0.1:18081", "cluster": "sidecar", "timeout": "7.5s"}
    assert service["path_prefix"] == "/authz"
    upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    assert {"exact": "x-cgt-decision"} in upstream


def test_client_cannot_send_decision_headers(config: dict[str, Any]) -> None:
    mutation = http_filter(config, "envoy.filters.http.header_mutation")
    assert {"remove_on_match": {"key_matcher": {"prefix": "x-cgt-"}}} in mutation["mutations"]["request_mutations"]


def test_filter_order(config: dict[str, Any]) -> None:
    # Decompressors before the callout: the callout and the forwarding path read the same bytes.
    assert [f["name"] for f in hcm(config)["http_filters"]] == [
        "envoy.filters.http.header_mutation", "envoy.filters.http.decompressor", "envoy.filters.http.decompressor",
        "envoy.filters.http.buffer", "envoy.filters.http.ext_authz", "envoy.filters.http.router",
    ]


def test_decompressors_decode_requests_only(config: dict[str, Any]) -> None:
    found = [f["typed_config"] for f in hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.decompressor"]
    assert [f["decompressor_library"]["name"] for f in found] == ["gzip", "brotli"]
    # Repetitive bodies compress far beyond Envoy's default ratio limit (100), which truncates them.
    assert found[0]["decompressor_library"]["typed_config"]["max_inflate_ratio"] == 1032
    for typed in found:
        assert typed["request_direction_config"]["common_config"]["enabled"]["default_value"] is True
        assert typed["response_direction_config"]["common_config"]["enabled"]["default_value"] is False


def test_callout_sees_a_content_encoding_left_over(config: dict[str, Any]) -> None:
    patterns = http_filter(config, "envoy.filters.http.ext_authz")["allowed_headers"]["patterns"]
    assert {"exact": "content-encoding"} in patterns


def test_slow_client_timeouts_bound_the_request_phase_only(config: dict[str, Any]) -> None:
    manager = hcm(config)
    assert manager["request_headers_timeout"] == "4.0s"
    assert manager["request_timeout"] == "33.0s"
    assert manager["stream_idle_timeout"] == "300s"  # the response phase keeps its long limit
    assert manager["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"


def test_overload_manager_bounds_heap_and_connections(config: dict[str, Any]) -> None:
    overload = config["overload_manager"]
    monitors = {m["name"]: m["typed_config"] for m in overload["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == 512 * 1024 * 1024
    assert monitors["envoy.resource_monitors.global_downstream_max_connections"][
        "max_active_downstream_connections"] == 777
    actions = {a["name"] for a in overload["actions"]}
    assert {"envoy.overload_actions.stop_accepting_requests", "envoy.overload_actions.reset_high_memory_stream",
            "envoy.overload_actions.shrink_heap"} <= actions


def test_routes_envoy_answers_itself_read_the_body_first(config: dict[str, Any]) -> None:
    # An HTTP/1 answer sent before the request body was read closes the connection (issue 15).
    routes = {r["name"]: r for r in hcm(config)["route_config"]["virtual_hosts"][0]["routes"]}
    buffered = {name for name, route in routes.items()
                if not route.get("typed_per_filter_config", {}).get("envoy.filters.http.buffer", {}).get("disabled")}
    assert buffered == {"chat_completions_wrong_method", "embeddings_wrong_method", "models_wrong_method",
                        "model_wrong_method", "unknown_path"}


def test_listener_takes_no_shared_port_and_serves_http_1_0(config: dict[str, Any]) -> None:
    listener = config["static_resources"]["listeners"][0]
    assert listener["enable_reuse_port"] is False
    assert hcm(config)["http_protocol_options"]["accept_http_10"] is True
    assert hcm(config)["stream_error_on_invalid_http_message"] is True


def test_drain_timeout_and_body_limit_message(config: dict[str, Any], text: str) -> None:
    assert hcm(config)["drain_timeout"] == "13s"
    assert "the limit is 3000000 bytes" in text


def test_sentinel_status_mapped_back_to_503(config: dict[str, Any]) -> None:
    first = hcm(config)["local_reply_config"]["mappers"][0]
    status_filter, flag_filter = first["filter"]["and_filter"]["filters"]
    assert status_filter["status_code_filter"]["comparison"]["value"]["default_value"] == SENTINEL_503
    assert flag_filter == {"response_flag_filter": {"flags": ["UAEX"]}}
    assert first["status_code"] == 503


def test_default_settings_render() -> None:
    config = yaml.safe_load(render(Settings()))
    listener = config["static_resources"]["listeners"][0]  # the client listener; [1] is `metrics`
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}


def test_render_from_another_template(tmp_path: Path) -> None:
    template = tmp_path / "t.tmpl"
    template.write_text("port: ${LISTEN_PORT}\nlimit: ${BUFFER_LIMIT_BYTES}\n")
    assert yaml.safe_load(render(SETTINGS, template)) == {"port": 18080, "limit": 3_000_000 + 1024 * 1024}


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    template = tmp_path / "t.tmpl"
    template.write_text("x: ${NOT_A_SETTING}\n")
    with pytest.raises(KeyError):
        render(SETTINGS, template)


def test_metrics_listener_serves_only_the_two_scrape_paths() -> None:
    config = yaml.safe_load(render(Settings(listen_address="0.0.0.0", metrics_port=19102, admin_port=19901)))
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    metrics = listeners["metrics"]
    assert metrics["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 19102}
    manager = metrics["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in manager["http_filters"]] == ["envoy.filters.http.router"]  # no callout here
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    served = {r["match"]["path"]: r["route"]["cluster"] for r in routes if "route" in r}
    assert served == {"/metrics": "sidecar", "/stats/prometheus": "envoy_admin"}
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["direct_response"]["status"] == 404
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    admin = clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert admin["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}


def test_sidecar_cluster_over_a_unix_socket() -> None:
    """GATEWAY_SIDECAR_SOCKET: both hops (the callout and the routed request) use the `pipe`."""
    config = yaml.safe_load(render(Settings(sidecar_port=18081, sidecar_socket="/run/gateway/side car.sock")))
    cluster = config["static_resources"]["clusters"][0]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (lb_endpoint,) = endpoints["lb_endpoints"]
    assert lb_endpoint["endpoint"]["address"] == {"pipe": {"path": "/run/gateway/side car.sock"}}
    service = http_filter(config, "envoy.filters.http.ext_authz")["http_service"]
    assert service["server_uri"]["cluster"] == "sidecar"
