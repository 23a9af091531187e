"""envoy_config.render: every placeholder filled from Settings, and the Envoy YAML's key settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.envoy.config import TEMPLATE_PATH, render
from sidecar.settings import SENTINEL_503, Settings

SETTINGS = Settings(listen_address="0.0.0.0", listen_port=18080, sidecar_port=18081, admin_port=19901,
                    max_body_bytes=3_000_000, authz_timeout_seconds=7.5, drain_seconds=13)


@pytest.fixture(scope="module")
def text() -> str:
    return render(SETTINGS)


@pytest.fixture(scope="module")
def config(text: str) -> dict[str, Any]:
    parsed = yaml.safe_load(text)
    assert isinstance(parsed, dict)
    return parsed


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
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
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 18080}
    assert listener["per_connection_buffer_limit_bytes"] == 3_000_000 + 1024 * 1024


def test_admin_bound_to_loopback(config: dict[str, Any]) -> None:
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}


def test_sidecar_cluster_port(config: dict[str, Any]) -> None:
    (cluster,) = config["static_resources"]["clusters"]
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
    assert [f["name"] for f in hcm(config)["http_filters"]] == [
        "envoy.filters.http.header_mutation", "envoy.filters.http.buffer", "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]


def test_routes_envoy_answers_itself_read_the_body_first(config: dict[str, Any]) -> None:
    # An HTTP/1 answer sent before the request body was read closes the connection (issue 15).
    routes = {r["name"]: r for r in hcm(config)["route_config"]["virtual_hosts"][0]["routes"]}
    buffered = {name for name, route in routes.items()
                if not route.get("typed_per_filter_config", {}).get("envoy.filters.http.buffer", {}).get("disabled")}
    assert buffered == {"chat_completions_wrong_method", "unknown_path"}


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
    (listener,) = config["static_resources"]["listeners"]
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
