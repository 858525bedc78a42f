"""Images in assets/: checked by `brief check`, absolute in the mail, published by
`brief site build`, `brief serve` and the preview, and never a way out of the folder."""

from __future__ import annotations

import http.client
import re
import struct
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import serve_in_thread

BASE = "https://brief.example.com"


def png(extra_bytes: int = 0) -> bytes:
    """A real 1x1 PNG, padded with a text chunk to the size a test needs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    if extra_bytes:
        out += chunk(b"tEXt", b"pad\x00" + b"x" * extra_bytes)
    return out + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")


def _append(path: Path, text: str) -> int:
    """Append ``text`` to a content file; the line number of its first line."""
    src = path.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    path.write_text(src + text, encoding="utf-8")
    return len(src.splitlines()) + 1


def _issue(root: Path) -> Path:
    return next((root / "issues").glob("001-*.md"))


def _with_chart(root: Path, alt: str = "A chart of the losses") -> int:
    (root / "assets").mkdir(exist_ok=True)
    (root / "assets" / "chart.png").write_bytes(png())
    return _append(_issue(root), f"![{alt}](assets/chart.png)\n")


def test_missing_image_is_an_error_naming_path_and_line(brief, issue_project):
    line = _append(_issue(issue_project), "![The chart](assets/nowhere.png)\n")
    result = brief("check")
    assert result.code == 1
    rel = f"issues/{_issue(issue_project).name}"
    assert f"{rel}:{line}: image assets/nowhere.png not found" in result.err


def test_an_image_name_with_an_encoded_space_is_found(brief, issue_project):
    (issue_project / "assets").mkdir(exist_ok=True)
    (issue_project / "assets" / "knight chart.png").write_bytes(png())
    _append(_issue(issue_project), "![The chart](assets/knight%20chart.png)\n")
    result = brief("check")
    assert result.code == 0, result.err
    assert "knight%20chart.png" not in result.err


def test_asset_image_without_alt_text_is_an_error(brief, issue_project):
    line = _with_chart(issue_project, alt="")
    result = brief("check")
    assert result.code == 1
    rel = f"issues/{_issue(issue_project).name}"
    assert f"{rel}:{line}: image without alt text: assets/chart.png" in result.err


def test_image_over_200_kb_warns_and_over_1_mb_is_an_error(brief, issue_project):
    assets = issue_project / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "big.png").write_bytes(png(300 * 1024))
    (assets / "huge.png").write_bytes(png(1100 * 1024))
    issue = _issue(issue_project)
    big = _append(issue, "![A big chart](/assets/big.png)\n")
    rel = f"issues/{issue.name}"
    result = brief("check")
    assert result.code == 0, result.err
    assert f"{rel}:{big}: warning: image /assets/big.png is 300 KB" in result.err
    huge = _append(issue, "![A huge chart](assets/huge.png)\n")
    result = brief("check")
    assert result.code == 1
    assert f"{rel}:{huge}: image assets/huge.png is 1100 KB; the limit is 1 MB" in result.err


def test_image_path_leaving_assets_is_an_error(brief, issue_project):
    line = _append(_issue(issue_project), "![Settings](assets/../brief.toml)\n")
    result = brief("check")
    assert result.code == 1
    assert f":{line}: image assets/../brief.toml is outside assets/" in result.err


def test_the_mail_points_at_assets_by_absolute_base_url(brief, issue_project, tmp_path):
    _with_chart(issue_project)
    result = brief("render", "1", "--out", str(tmp_path / "out"))
    assert result.code == 0, result.err
    html = (tmp_path / "out" / "001.html").read_text(encoding="utf-8")
    text = (tmp_path / "out" / "001.txt").read_text(encoding="utf-8")
    assert f'src="{BASE}/assets/chart.png"' in html
    assert 'src="assets/' not in html and 'src="/assets/' not in html
    assert re.search(rf"^\[\d+\] {re.escape(BASE)}/assets/chart\.png$", text, re.M), text


def test_site_build_copies_assets_and_the_page_finds_them(brief, published, tmp_path):
    (published / "assets").mkdir(exist_ok=True)
    data = png()
    (published / "assets" / "chart.png").write_bytes(data)
    (published / "assets" / ".secret").write_text("not for the web", encoding="utf-8")
    _append(next((published / "issues").glob("001-*.md")), "![A chart](assets/chart.png)\n")
    out = tmp_path / "site"
    result = brief("site", "build", "--out", str(out))
    assert result.code == 0, result.err
    assert (out / "assets" / "chart.png").read_bytes() == data
    assert not (out / "assets" / ".secret").exists()
    page = (out / "issues" / "001" / "index.html").read_text(encoding="utf-8")
    assert 'src="/assets/chart.png"' in page


def _raw_get(url: str, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` exactly as written (no client normalising ``..`` away)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", parts.netloc)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()
    finally:
        conn.close()


TRAVERSALS = [
    "/assets/../brief.toml",
    "/assets/..%2fbrief.toml",
    "/assets/%2e%2e/brief.toml",
    "/assets/../../etc/passwd",
    "/assets/.secret",
    "/assets/",
]


@pytest.fixture
def served_public(published, web_engine, web_settings):
    from pipeline.web.public import create_app

    (published / "assets").mkdir(exist_ok=True)
    (published / "assets" / "chart.png").write_bytes(png())
    (published / "assets" / ".secret").write_text("not for the web", encoding="utf-8")
    with serve_in_thread(create_app(web_settings, engine=web_engine)) as url:
        yield url


def test_brief_serve_publishes_assets(served_public):
    status, ctype, body = _raw_get(served_public, "/assets/chart.png")
    assert (status, ctype) == (200, "image/png")
    assert body == png()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_brief_serve_never_serves_outside_assets(served_public, path):
    status, _, body = _raw_get(served_public, path)
    assert status == 404, (path, body[:200])
    assert b"[newsletter]" not in body and b"root:" not in body and b"not for the web" not in body


def test_preview_shows_assets_from_the_working_tree(issue_project, preview_server):
    _with_chart(issue_project)
    (issue_project / "assets" / ".secret").write_text("not for the web", encoding="utf-8")
    status, ctype, body = _raw_get(preview_server, "/assets/chart.png")
    assert (status, ctype) == (200, "image/png")
    status, _, page = _raw_get(preview_server, "/issues/001/email.html")
    assert status == 200
    assert b'src="/assets/chart.png"' in page
    for path in TRAVERSALS:
        status, _, body = _raw_get(preview_server, path)
        assert status == 404, path
        assert b"[newsletter]" not in body and b"not for the web" not in body
