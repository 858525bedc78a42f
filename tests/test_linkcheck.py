"""`brief check --links` against a real threaded HTTP server on loopback: 200, redirect
chains, 404, a server refusing HEAD, a timeout, too many redirects, and the cache in
.brief/ that makes a second run fetch nothing."""

from __future__ import annotations

import json
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.wrappers import Response

from tests.servers import free_port

SLOW_SECONDS = 1.5


@pytest.fixture
def linkserver():
    """pytest-httpserver's server, threaded: a slow answer must not hold up the others."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=free_port(), threaded=True)
    server.start()
    ok = {"status": 200}
    server.expect_request("/ok").respond_with_data("fine", **ok)
    server.expect_request("/source").respond_with_data("a source", **ok)
    for hop in (1, 2):
        server.expect_request(f"/hop{hop}").respond_with_response(
            Response(status=301, headers={"Location": f"/hop{hop + 1}" if hop < 2 else "/ok"})
        )
    server.expect_request("/missing").respond_with_data("gone", status=404)
    server.expect_request("/nohead", method="HEAD").respond_with_data("", status=405)
    server.expect_request("/nohead", method="GET").respond_with_data("body", status=200)

    def slow(request):
        time.sleep(SLOW_SECONDS)
        return Response("late", status=200)

    server.expect_request("/slow").respond_with_handler(slow)
    server.expect_request("/loop").respond_with_response(
        Response(status=302, headers={"Location": "/loop"})
    )
    try:
        yield server
    finally:
        server.clear()
        server.stop()


def _hermetic(root: Path, base: str) -> None:
    """Point every URL of the copied content at the local server: tests fetch nothing
    off the machine."""
    for folder in ("glossary", "museum", "issues"):
        for path in (root / folder).glob("*.md"):
            text = path.read_text(encoding="utf-8")
            path.write_text(
                re.sub(r"https?://[^\s<>()\[\]\"'`]+", f"{base}/source", text), encoding="utf-8"
            )


def _append(path: Path, text: str) -> int:
    src = path.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    path.write_text(src + text, encoding="utf-8")
    return len(src.splitlines()) + 1


def _paths(server) -> list[tuple[str, str]]:
    return [(req.method, req.path) for req, _ in server.log]


def test_check_links_reports_broken_links_with_path_and_line(brief, issue_project, linkserver):
    base = linkserver.url_for("").rstrip("/")
    _hermetic(issue_project, base)
    issue = next((issue_project / "issues").glob("001-*.md"))
    at = {
        name: _append(issue, f"See [{name}]({base}/{name}).\n")
        for name in ("ok", "hop1", "missing", "nohead", "slow", "loop")
    }
    result = brief("check", "--links", "--link-timeout", "0.5")
    assert result.code == 1, result.err
    rel = f"issues/{issue.name}"
    assert f"{rel}:{at['missing']}: broken link {base}/missing: HTTP 404" in result.err
    assert f"{rel}:{at['slow']}: broken link {base}/slow: no answer within 0.5 s" in result.err
    assert f"{rel}:{at['loop']}: broken link {base}/loop: more than 5 redirects" in result.err
    for fine in ("ok", "hop1", "nohead", "source"):
        assert f"broken link {base}/{fine}:" not in result.err
    assert "links: 7 fetched, 0 from the cache" in result.err
    seen = _paths(linkserver)
    # the chain was followed to its end, and a server refusing HEAD was asked with GET
    assert ("HEAD", "/hop2") in seen and ("HEAD", "/ok") in seen
    assert ("GET", "/nohead") in seen
    # every museum story's sources are checked too, not only the issue's story
    assert ("HEAD", "/source") in seen


def test_a_second_run_reuses_good_results_and_asks_the_server_nothing(
    brief, issue_project, linkserver
):
    base = linkserver.url_for("").rstrip("/")
    _hermetic(issue_project, base)
    issue = next((issue_project / "issues").glob("001-*.md"))
    _append(issue, f"See [a chain]({base}/hop1) and [fine]({base}/ok).\n")
    first = brief("check", "--links")
    assert first.code == 0, first.err
    assert "links: 3 fetched, 0 from the cache" in first.err
    cache = issue_project / ".brief" / "linkcheck.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    linkserver.clear_log()
    second = brief("check", "--links")
    assert second.code == 0, second.err
    assert "links: 0 fetched, 3 from the cache" in second.err
    assert _paths(linkserver) == []


def test_broken_links_are_asked_again_and_a_day_old_result_is_fetched_again(
    brief, issue_project, linkserver
):
    base = linkserver.url_for("").rstrip("/")
    _hermetic(issue_project, base)
    issue = next((issue_project / "issues").glob("001-*.md"))
    _append(issue, f"See [fine]({base}/ok) and [gone]({base}/missing).\n")
    assert brief("check", "--links").code == 1
    linkserver.clear_log()
    assert brief("check", "--links").code == 1
    assert _paths(linkserver) == [("HEAD", "/missing"), ("GET", "/missing")]

    cache = issue_project / ".brief" / "linkcheck.json"
    data = json.loads(cache.read_text(encoding="utf-8"))
    old = (datetime.now(UTC) - timedelta(days=1, minutes=1)).isoformat()
    for item in data["links"].values():
        item["checked_at"] = old
    cache.write_text(json.dumps(data), encoding="utf-8")
    linkserver.clear_log()
    result = brief("check", "--links")
    assert "links: 3 fetched, 0 from the cache" in result.err
    assert ("HEAD", "/ok") in _paths(linkserver)


def test_a_corrupt_cache_is_ignored_not_fatal(brief, issue_project, linkserver):
    base = linkserver.url_for("").rstrip("/")
    _hermetic(issue_project, base)
    (issue_project / ".brief" / "linkcheck.json").write_text("{not json", encoding="utf-8")
    result = brief("check", "--links")
    assert result.code == 0, result.err
    assert "0 from the cache" in result.err


def test_urls_are_found_in_markdown_and_yaml_without_their_punctuation():
    from pipeline.render.links import urls_in

    text = (
        "sources:\n  - https://a.example/x\n"
        "See [it](https://b.example/y) and <https://c.example/z>, or https://d.example/w.\n"
        "[Wiki](https://e.example/wiki/Foo_(bar)) (https://f.example/v)\n"
    )
    assert list(urls_in(text)) == [
        (2, "https://a.example/x"),
        (3, "https://b.example/y"),
        (3, "https://c.example/z"),
        (3, "https://d.example/w"),
        (4, "https://e.example/wiki/Foo_(bar)"),
        (4, "https://f.example/v"),
    ]
