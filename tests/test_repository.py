"""The repository stands alone: its documents link nothing outside it."""

from __future__ import annotations

import re

from tests.conftest import REPO

# [text](target) in Markdown; the target up to a space, a closing bracket or an anchor.
LINK = re.compile(r"\]\(([^)\s#]+)")


def _documents() -> list:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_documents_link_only_to_files_inside_the_repository():
    checked = 0
    for doc in _documents():
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(REPO), f"{doc.relative_to(REPO)} links outside: {target}"
            assert path.exists(), f"{doc.relative_to(REPO)} links a missing file: {target}"
            checked += 1
    # README links docs/architecture.md and docs/providers.md at least.
    assert checked >= 2


def test_documents_name_no_path_beside_the_repository():
    for doc in _documents():
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text, f"{doc.relative_to(REPO)} points beside the repository"
