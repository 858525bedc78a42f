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


def test_the_readme_code_map_matches_the_tree():
    """Every module of the package is named in README's code map, and every `part/module`
    the map names exists: the map is how a newcomer finds where a thing happens."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Code map") : text.index("\n## ", text.index("## Code map") + 5)]
    package = REPO / "pipeline"
    modules = [
        p.relative_to(package).with_suffix("")
        for p in package.rglob("*.py")
        if "migrations" not in p.parts and p.name not in ("__init__.py", "__main__.py")
    ]
    unnamed = [str(m) for m in modules if not re.search(rf"\b{re.escape(m.stem)}\b", section)]
    assert unnamed == [], "modules missing from README's code map"
    named = set(re.findall(r"`([a-z_]+/[a-z_]+)`", section))
    stale = [n for n in named if not (package / f"{n}.py").exists() and not (package / n).is_dir()]
    assert stale == [], "README's code map names modules that are not there"
