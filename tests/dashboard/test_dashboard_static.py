"""The dashboard's files as the server sends them: the page at / and /dashboard/ never cached, every
file it loads under a content-hashed name cached for a year, a Content-Security-Policy that allows
only this origin, the vendored Chart.js exactly as published, and all of it inside a built wheel."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import dashboard
from tests.support import REPO
from tests.support.api_data import build_read_model, make_client
from tests.support.testclient import TestClient

STATIC = REPO / "dashboard" / "static"
CHART_JS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"
CHART_JS_VERSION = "4.6.1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    handle = build_read_model(tmp_path_factory.mktemp("dashboard") / "rm.duckdb")
    with make_client(handle) as c:
        yield c
    handle.connection.close()


def referenced(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page)


@pytest.mark.parametrize("path", ["/", "/dashboard/"])
def test_the_page_is_served_uncached_with_a_same_origin_policy(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == policy["script-src"] == policy["connect-src"] == "'self'"
    assert policy["style-src"] == "'self'" and policy["object-src"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    # Nothing inline that the policy would block, and nothing from another host.
    page = response.text
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    assert " style=" not in page and "<style" not in page and "javascript:" not in page
    assert re.search(r'(?:src|href)="(?:https?:)?//', page) is None
    assert len(referenced(page)) == 4
    assert client.get("/dashboard").headers["content-type"].startswith("text/html")  # redirected to the slash


def test_every_file_the_page_loads_is_fingerprinted_and_cached_for_a_year(client: TestClient) -> None:
    for path in referenced(client.get("/").text):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        name = path.rsplit("/", 1)[1]
        stem, digest, suffix = name.rsplit(".", 2)
        # The name carries the content's hash, so a changed file is a new URL and a year's cache is safe.
        assert digest == hashlib.sha256(response.content).hexdigest()[:10]
        assert response.content == (STATIC / f"{stem}.{suffix}").read_bytes()
        expected_type = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[suffix]
        assert response.headers["content-type"].startswith(expected_type)
        assert client.head(path).headers["content-length"] == str(len(response.content))
    for missing in ("app.js", "app.0000000000.js", "index.html", "VENDORED.md"):
        response = client.get(f"/dashboard/static/{missing}")
        assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_a_changed_file_gets_another_name() -> None:
    assert dashboard.fingerprinted("app.js", b"one") != dashboard.fingerprinted("app.js", b"two")
    assert re.fullmatch(r"chart\.umd\.min\.[0-9a-f]{10}\.js", dashboard.fingerprinted("chart.umd.min.js", b"x"))


def test_the_vendored_chart_js_is_the_published_file_with_its_licence() -> None:
    body = (STATIC / "chart.umd.min.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() == CHART_JS_SHA256
    assert f"Chart.js v{CHART_JS_VERSION}".encode() in body[:200]
    notes = (STATIC / "VENDORED.md").read_text()
    assert CHART_JS_SHA256 in notes and f"chart.js@{CHART_JS_VERSION}" in notes
    assert "MIT License" in (STATIC / "chart.js.LICENSE.md").read_text()


def test_the_dashboard_code_builds_no_html_from_data() -> None:
    # Every text from the API goes through textContent; innerHTML and friends would let a chat turn
    # inject markup (the policy would block scripts, but not forms or links).
    code = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code


def test_an_installed_wheel_carries_the_static_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(REPO)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("chat_analytics-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in STATIC.iterdir():
        assert f"dashboard/static/{f.name}" in names


def test_make_demo_names_the_dashboard_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.demo_cmd import STAFF_TOKEN, demo_environment, sign_in_hint
    from schemas.settings import ENV_API_TOKENS

    monkeypatch.delenv(ENV_API_TOKENS, raising=False)
    assert sign_in_hint(demo_environment("127.0.0.1:9092")) == f"sign in with the token {STAFF_TOKEN}"
    monkeypatch.setenv(ENV_API_TOKENS, "mine:staff")
    assert sign_in_hint(demo_environment("127.0.0.1:9092")) == "sign in with a staff token of CHAT_ANALYTICS_API_TOKENS"
