"""Path handling of the aiohttp shell: prefix, dot segments, refusal bodies."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import make_mocked_request

from b2cal_assets.proxy.config import ProxyConfig, load_config
from b2cal_assets.proxy.errors import BadRequestError, ProxyConfigError
from b2cal_assets.proxy.headers import forward_response_headers
from b2cal_assets.proxy.server import ProxyApp, error_response


class _State:
    def __init__(self, prefix: str) -> None:
        self.config = ProxyConfig(path_prefix=prefix)


def checked(path: str, prefix: str = "") -> str:
    return ProxyApp(_State(prefix))._checked_path(make_mocked_request("GET", path))  # type: ignore[arg-type]


def test_prefix_is_stripped_and_outside_paths_refused() -> None:
    assert checked("/dagster/graphql", "/dagster") == "/graphql"
    assert checked("/dagster", "/dagster") == "/"
    with pytest.raises(BadRequestError):
        checked("/graphql", "/dagster")
    with pytest.raises(BadRequestError):
        checked("/dagsterx/graphql", "/dagster")


def test_dot_segments_are_refused() -> None:
    for path in ("/static/../graphql", "/a/./b", "/logs/%2e%2e/x"):
        with pytest.raises(BadRequestError):
            checked(path)
    assert checked("/graphql/") == "/graphql/"


def test_refusals_are_html_for_browsers_and_json_for_clients() -> None:
    browser = error_response(make_mocked_request("GET", "/runs", headers={"Accept": "text/html"}), 403, "needs <launch>")
    assert browser.content_type == "text/html" and "&lt;launch&gt;" in browser.text
    api = error_response(make_mocked_request("POST", "/graphql", headers={"Accept": "text/html"}), 403, "no")
    assert json.loads(api.text) == {"error": "no", "status": 403, "errors": [{"message": "no"}]}


def test_config_refuses_a_proxy_nobody_could_authenticate_to(tmp_path) -> None:
    with pytest.raises(ProxyConfigError, match="trusted-front"):
        load_config(None, {"ca_dir": tmp_path, "vomsdir": tmp_path})
    config_file = tmp_path / "proxy.yaml"
    config_file.write_text(f"trusted_front: 10.0.0.1\nca_dir: {tmp_path}\nvomsdir: {tmp_path}\nlisten: 127.0.0.1:9\n")
    config = load_config(config_file, {"listen": "127.0.0.1:8443"})
    assert config.trusted_front == ["10.0.0.1"] and config.listen_host_port == ("127.0.0.1", 8443)
    config_file.write_text("bogus: 1\n")
    with pytest.raises(ProxyConfigError, match="unknown keys"):
        load_config(config_file, {})


def test_redirects_naming_the_webserver_are_made_relative() -> None:
    upstream = "127.0.0.1:3000"
    # Either scheme: the webserver takes it from X-Forwarded-Proto (https behind this proxy).
    headers = [("Location", "https://127.0.0.1:3000/dagster/runs?x=1"), ("Content-Location", "http://127.0.0.1:3000"),
               ("X-Other", "http://127.0.0.1:3000/kept")]
    assert forward_response_headers(headers, upstream) == [
        ("Location", "/dagster/runs?x=1"), ("Content-Location", "/"), ("X-Other", "http://127.0.0.1:3000/kept")]
    # Other hosts, and a longer port that merely starts with the same digits, are left alone.
    for location in ("https://b2cal.example/x", "http://127.0.0.1:30001/x", "/already/relative"):
        assert forward_response_headers([("Location", location)], upstream) == [("Location", location)]


def test_upstream_must_be_a_plain_http_address_without_path(tmp_path) -> None:
    base = {"ca_dir": tmp_path, "vomsdir": tmp_path, "trusted_front": ("127.0.0.1",)}
    for upstream in ("https://127.0.0.1:3000", "http://127.0.0.1:3000/dagster", "127.0.0.1:3000"):
        with pytest.raises(ProxyConfigError, match="--upstream"):
            load_config(None, {**base, "upstream": upstream})
    assert load_config(None, {**base, "upstream": "http://127.0.0.1:3000/"}).upstream == "http://127.0.0.1:3000/"


def test_path_prefix_is_a_flag_too(tmp_path) -> None:
    from click.testing import CliRunner

    from b2cal_assets.proxy.cli import proxy

    assert "--path-prefix" in CliRunner().invoke(proxy, ["--help"]).output
    config = load_config(None, {"ca_dir": tmp_path, "vomsdir": tmp_path, "trusted_front": ("127.0.0.1",), "path_prefix": "/dagster"})
    assert config.path_prefix == "/dagster"
    with pytest.raises(ProxyConfigError, match="path_prefix"):
        load_config(None, {"ca_dir": tmp_path, "vomsdir": tmp_path, "trusted_front": ("127.0.0.1",), "path_prefix": "dagster/"})
