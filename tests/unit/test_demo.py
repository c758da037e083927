"""The browser softphone's files (server/demo.py): served only with ``demo: true``, only
the files of its table (no path reaches the file system), with their content types and a
CSP of this origin only; ``config.json`` says whether the native endpoint wants a token;
the network rules apply; the page loads nothing from another origin."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from server.auth import parse_auth_config
from server.config import ServerConfig, load_config
from server.demo import CSP, DEMO_FILES, demo_response, is_demo_path, page_config
from voicebot.errors import ConfigError

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "server" / "demo"
ON = replace(ServerConfig(), demo=True)


def _get(path: str, config: ServerConfig = ON, *, peer_ip: str = "127.0.0.1",
         headers: dict[str, str] | None = None) -> Response:
    request = Request(path, Headers({"Host": "127.0.0.1:8765", **(headers or {})}))
    return asyncio.run(demo_response(request, config, ["bank_card", "pizza"], peer_ip=peer_ip))


def test_off_by_default_and_on_in_the_dev_config() -> None:
    assert ServerConfig().demo is False
    assert load_config(env={}).demo is False
    assert load_config(ROOT / "server" / "configs" / "dev.yaml", env={}).demo is True
    for name in ("reference.yaml", "bench-lite.yaml"):
        assert load_config(ROOT / "server" / "configs" / name, env={}).demo is False
    for path in ("/demo", "/demo/", "/demo/demo.js", "/demo/config.json"):
        assert _get(path, ServerConfig()).status_code == 404


def test_demo_must_be_a_boolean(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("demo: maybe\n")
    with pytest.raises(ConfigError, match="demo must be true or false"):
        load_config(config, env={})


@pytest.mark.parametrize("name", sorted(DEMO_FILES))
def test_every_file_is_served_with_its_type_and_the_csp(name: str) -> None:
    response = _get(f"/demo/{name}?v=1")
    assert response.status_code == 200
    assert response.body == (FILES / name).read_bytes()
    assert response.headers["Content-Type"] == DEMO_FILES[name]
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Length"] == str(len(response.body))


@pytest.mark.parametrize("path", ["/demo", "/demo/", "/demo?x=1"])
def test_the_page_is_the_index(path: str) -> None:
    response = _get(path)
    assert response.status_code == 200 and response.body == (FILES / "index.html").read_bytes()
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


def test_the_folder_holds_exactly_the_files_of_the_table() -> None:
    assert {p.name for p in FILES.iterdir()} == set(DEMO_FILES)


def test_the_csp_names_no_other_origin() -> None:
    sources = {s for d in CSP.split(";") for s in d.split()[1:]}
    assert sources <= {"'self'", "'none'"}, sources
    assert "script-src 'self'" in CSP and "connect-src 'self'" in CSP


@pytest.mark.parametrize("path", [
    "/demo/../server/app.py", "/demo/..%2fapp.py", "/demo/%2e%2e/demo.py", "/demo//etc/passwd",
    "/demo/demo/../demo.js", "/demo/./demo.js", "/demo/DEMO.JS", "/demo/demo.js/",
    "/demo/config.json/x", "/demo/__init__.py", "/demo/.", "/demo/..", "/demo/icon.svg%00",
])
def test_nothing_outside_the_table_is_served(path: str) -> None:
    assert _get(path).status_code == 404


@given(st.text(min_size=1, max_size=40))
def test_any_other_name_is_404(name: str) -> None:
    response = _get(f"/demo/{name}")
    if name.split("?", 1)[0] in (*DEMO_FILES, "config.json", ""):
        assert response.status_code == 200
    else:
        assert response.status_code == 404 and b"not part of the demo page" in response.body


def test_only_the_demo_paths_are_the_demos() -> None:
    assert is_demo_path("/demo") and is_demo_path("/demo/x?y") and is_demo_path("/demo?t=1")
    assert not is_demo_path("/demox") and not is_demo_path("/native") and not is_demo_path("/")


def _auth(section: Any) -> ServerConfig:
    return replace(ON, auth=parse_auth_config(section, env={"NATIVE": "n" * 32},
                                              base_dir=ROOT))


def test_config_json_says_whether_a_token_is_needed() -> None:
    body = json.loads(_get("/demo/config.json").body)
    assert body == {"scenarios": ["bank_card", "pizza"], "default_scenario": "bank_card",
                    "auth": "none", "path": "/native", "events": ["turn"]}
    token = _auth({"native": {"tokens_env": "NATIVE"}})
    assert page_config(token, ["bank_card"])["auth"] == "token"
    signed = _auth({"token_keys": [{"id": "k1", "secret_env": "NATIVE"}],
                    "native": {"signed_tokens": True}})
    assert page_config(signed, ["bank_card"])["auth"] == "token"
    assert page_config(_auth("none"), ["bank_card"])["auth"] == "none"
    # Another endpoint's credentials do not close the native one.
    assert page_config(_auth({"telnyx": {"tokens_env": "NATIVE"}}), [])["auth"] == "none"
    assert b"n" * 32 not in _get("/demo/config.json", token).body  # never a secret


def test_the_network_rules_apply_to_the_page() -> None:
    config = _auth({"native": {"tokens_env": "NATIVE"}, "allowed_networks": ["10.0.0.0/8"]})
    assert _get("/demo", config, peer_ip="192.0.2.7").status_code == 403
    assert _get("/demo", config, peer_ip="10.1.2.3").status_code == 200
    foreign = {"Origin": "https://evil.example"}
    assert _get("/demo/demo.js", config, peer_ip="10.1.2.3", headers=foreign).status_code == 403


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for name in DEMO_FILES:
        text = (FILES / name).read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9]", text.replace("http://www.w3.org/2000/svg",
                                                                      "")), name
    html = (FILES / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.removeprefix("/demo/") in DEMO_FILES for r in refs), refs
    assert "<script>" not in html and " style=" not in html  # nothing inline (the CSP)
    js = (FILES / "demo.js").read_text(encoding="utf-8")
    assert 'events: ["turn"]' in js and "ws.binaryType" in js
