"""`brief site build`: the archive, glossary, museum and feed as static files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

ATOM = "{http://www.w3.org/2005/Atom}"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src", "action") and value:
                self.links.append(value)


def _links(path: Path) -> list[str]:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.links


def _resolve(out: Path, page: Path, link: str) -> Path | None:
    """The file a link inside the built site points at, or None for an outside link."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith(("mailto:", "#")):
        return None
    path = parts.path
    if not path.startswith("/"):
        path = "/" + str(page.parent.relative_to(out) / path)
    target = out / path.lstrip("/")
    return target / "index.html" if path.endswith("/") else target


def test_site_build_writes_sent_issues_and_what_they_published(brief, published, tmp_path):
    out = tmp_path / "public"
    result = brief("site", "build", "--out", str(out))
    assert result.code == 0, result.err
    assert "2 issues, 2 glossary entries, 2 museum stories" in result.out
    assert (out / "issues/001/index.html").is_file()
    assert (out / "issues/002/index.html").is_file()
    # Issue 3 is a draft: neither it nor what it carries is public yet.
    assert not (out / "issues/003").exists()
    assert not (out / "glossary/hallucination").exists()
    assert not (out / "museum/zillow-offers").exists()
    # Queued entries carried by no issue stay private too.
    assert not (out / "glossary/inference").exists()
    issue = (out / "issues/002/index.html").read_text()
    assert "Fine-Tuning · Mars Climate Orbiter" in issue
    assert "The Technical Definition" in issue and "What Happened" in issue
    assert "Intro of issue 2: <strong>fine-tuning</strong>" in issue
    assert 'href="/unsubscribe/"' in issue
    assert "%%BRIEF_" not in issue


def test_glossary_index_lists_every_published_entry_a_to_z(brief, published, tmp_path):
    out = tmp_path / "public"
    assert brief("site", "build", "--out", str(out)).code == 0
    index = (out / "glossary/index.html").read_text()
    assert index.index("Deep Learning") < index.index("Fine-Tuning")
    assert 'id="letter-D"' in index and 'id="letter-F"' in index
    assert 'href="/glossary/deep-learning/"' in index
    entry = (out / "glossary/deep-learning/index.html").read_text()
    assert "What vendors mean:" in entry and 'href="/issues/001/"' in entry
    museum = (out / "museum/index.html").read_text()
    assert 'href="/museum/knight-capital/"' in museum
    assert 'href="/museum/mars-climate-orbiter/"' in museum


def test_feed_is_valid_atom_with_one_entry_per_sent_issue(brief, published, tmp_path):
    out = tmp_path / "public"
    assert brief("site", "build", "--out", str(out)).code == 0
    root = ET.parse(out / "feed.xml").getroot()
    assert root.tag == f"{ATOM}feed"
    # RFC 4287 4.1.1: a feed has exactly one id, title and updated.
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"{ATOM}{name}")) == 1, name
    assert root.find(f"{ATOM}author/{ATOM}name") is not None
    self_links = [link for link in root.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert self_links[0].get("href") == "https://brief.example.com/feed.xml"
    entries = root.findall(f"{ATOM}entry")
    assert [e.find(f"{ATOM}id").text for e in entries] == [
        "https://brief.example.com/issues/002/",
        "https://brief.example.com/issues/001/",
    ]
    for entry in entries:
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1, name
        # Times carry the newsletter's offset: 07:00 in New York in December is -05:00.
        assert entry.find(f"{ATOM}updated").text.endswith("T07:00:00-05:00")
    assert root.find(f"{ATOM}updated").text == "2026-12-16T07:00:00-05:00"


def test_every_internal_link_in_the_built_site_resolves(brief, published, tmp_path):
    out = tmp_path / "public"
    assert brief("site", "build", "--out", str(out)).code == 0
    pages = sorted(out.rglob("*.html"))
    assert len(pages) >= 10
    checked = 0
    broken = []
    for page in pages:
        for link in _links(page):
            target = _resolve(out, page, link)
            if target is None:
                continue
            checked += 1
            if not target.is_file():
                broken.append(f"{page.relative_to(out)} -> {link}")
    assert checked > 50
    assert broken == []


def test_rebuild_replaces_the_old_site_and_leaves_no_staging_folders(brief, published, tmp_path):
    out = tmp_path / "public"
    out.mkdir()
    (out / "leftover.html").write_text("old")
    assert brief("site", "build", "--out", str(out)).code == 0
    assert not (out / "leftover.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newsletter", "public"]


def test_site_build_with_nothing_sent_still_builds_an_empty_archive(brief, project, tmp_path):
    out = tmp_path / "public"
    result = brief("site", "build", "--out", str(out))
    assert result.code == 0, result.err
    assert "0 issues" in result.out
    assert "No issue has gone out yet." in (out / "index.html").read_text()
    assert ET.parse(out / "feed.xml").getroot().tag == f"{ATOM}feed"


def test_site_build_on_broken_content_names_path_and_line_and_writes_nothing(
    brief, published, tmp_path
):
    path = published / "glossary" / "deep-learning.md"
    path.write_text(path.read_text().replace("---\n", "---\nflavour: vanilla\n", 1))
    out = tmp_path / "public"
    result = brief("site", "build", "--out", str(out))
    assert result.code == 1
    assert "glossary/deep-learning.md:2: unknown field 'flavour'" in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_markup_in_content_is_escaped_not_rendered(brief, published, tmp_path):
    path = published / "issues" / "002-2026-12-16.md"
    path.write_text(path.read_text() + "\n<script>alert(1)</script>\n")
    out = tmp_path / "public"
    assert brief("site", "build", "--out", str(out)).code == 0
    page = (out / "issues/002/index.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
