"""Hostile frontmatter: impossible dates, wrong types, deep nesting, control characters.

Each is a content error naming ``path:line`` (never an internal error), and one broken
file never takes down the public archive or a subscriber's welcome mail.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.content.library import load_library
from pipeline.errors import ContentError
from tests.fixtures_web import body_text, link_in, outbox_messages


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ContentError) as info:
        load_library(root)
    return [str(p) for p in info.value.problems]


def set_field(path: Path, field: str, value: str) -> int:
    """Replace (or add) one frontmatter field, list items included; returns its line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    new = f"{field}: {value}"
    at = next((n for n, line in enumerate(lines) if line.startswith(f"{field}:")), None)
    if at is None:
        lines.insert(1, new)
        at = 1
    else:
        end = at + 1
        while end < len(lines) and lines[end].startswith((" ", "- ")):
            end += 1
        lines[at:end] = [new]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return at + 1


ISSUE = "issues/001-2026-12-02.md"


@pytest.mark.parametrize(
    "rel, field, value",
    [
        ("glossary/inference.md", "queued", "2026-13-45"),
        ("glossary/inference.md", "queued", "2026-02-30"),
        ("glossary/inference.md", "queued", "!!timestamp 2026-13-45"),
        ("museum/zillow-offers.md", "date", "0000-01-01"),
        ("museum/zillow-offers.md", "date", "2021-11-02T25:00:00"),
        (ISSUE, "date", "2026-12-45"),
    ],
)
def test_impossible_date_is_a_content_error_at_its_line(project, rel, field, value):
    line = set_field(project / rel, field, value)
    found = [p for p in problems_of(project) if p.startswith(f"{rel}:")]
    assert found and all(p.startswith(f"{rel}:{line}: ") for p in found), found
    assert any(f"field '{field}'" in p and "date" in p for p in found), found


@pytest.mark.parametrize(
    "rel, field, value, message",
    [
        ("glossary/inference.md", "term", "!!int x", "bad YAML in frontmatter"),
        ("glossary/inference.md", "term", "!!float x", "bad YAML in frontmatter"),
        ("glossary/inference.md", "term", "!!int", "bad YAML in frontmatter"),
        ("glossary/inference.md", "term", "!!bool", "bad YAML in frontmatter"),
        ("glossary/inference.md", "term", "{a: 1}", "field 'term' must be text"),
        ("glossary/inference.md", "term", '"Infer\\0ence"', "control character"),
        ("glossary/inference.md", "priority", "1.5", "must be a whole number"),
        ("glossary/inference.md", "priority", "99999999999999999999", "between"),
        ("museum/zillow-offers.md", "sources", "[!!int x]", "bad YAML in frontmatter"),
        ("museum/zillow-offers.md", "sources", "[{a: 1}]", "list of text values"),
        ("museum/zillow-offers.md", "sources", '["https://a.example/\\x07"]', "control character"),
        (ISSUE, "number", "99999999999999999999", "number"),
        (ISSUE, "number", "0", "number"),
        (ISSUE, "date", "0001-01-01", "year must be between"),
        (ISSUE, "date", "9999-12-29", "year must be between"),
        (ISSUE, "status", "[sent]", "field 'status' must be text"),
        (ISSUE, "glossary", "[1]", "list of text values"),
    ],
)
def test_every_frontmatter_value_is_type_checked_at_its_line(project, rel, field, value, message):
    line = set_field(project / rel, field, value)
    found = [p for p in problems_of(project) if p.startswith(f"{rel}:{line}: ")]
    assert any(message in p for p in found), problems_of(project)


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")])
def test_value_nested_thousands_deep_is_a_content_error(project, opener, closer):
    path = project / "glossary" / "inference.md"
    line = set_field(path, "term", opener * 5000 + "x" + closer * 5000)
    found = problems_of(project)
    assert any(p.startswith(f"glossary/inference.md:{line}: ") and "nested" in p for p in found), (
        found
    )


def test_control_character_in_the_body_names_its_line(project):
    path = project / "museum" / "knight-capital.md"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(n for n, line in enumerate(lines) if line.startswith("## What Happened")) + 2
    lines[at - 1] = "Knight\x00 Capital\n"
    path.write_text("".join(lines), encoding="utf-8")
    assert f"museum/knight-capital.md:{at}: control character U+0000 is not allowed" in (
        problems_of(project)
    )


@pytest.mark.parametrize(
    "args",
    [("check",), ("queue",), ("send", "1", "--dry-run"), ("run", "--once")],
    ids=lambda a: " ".join(a),
)
def test_commands_report_an_impossible_date_as_path_line_not_an_internal_error(
    project, brief, args
):
    line = set_field(project / "glossary" / "inference.md", "queued", "2026-13-45")
    outcome = brief(*args, env={"BRIEF_NOW": "2026-11-30T09:00"})
    assert "internal error" not in outcome.err
    assert outcome.code == 1, outcome.err
    assert f"glossary/inference.md:{line}: " in outcome.err


def test_read_library_keeps_every_valid_file_and_returns_the_problems(project):
    set_field(project / "glossary" / "inference.md", "queued", "2026-13-45")
    set_field(project / "museum" / "zillow-offers.md", "cost", "[[[")
    from pipeline.content.library import read_library

    loaded = read_library(project)
    assert {p.path for p in loaded.problems} == {
        "glossary/inference.md",
        "museum/zillow-offers.md",
    }
    assert "inference" not in loaded.library.glossary
    assert "zillow-offers" not in loaded.library.museum
    assert "deep-learning" in loaded.library.glossary
    assert [i.number for i in loaded.library.issues] == [1]


def test_read_library_leaves_out_an_issue_whose_entry_is_broken(project):
    set_field(project / "glossary" / "deep-learning.md", "queued", "2026-13-45")
    from pipeline.content.library import read_library

    loaded = read_library(project)
    assert loaded.library.issues == ()
    # The entry's own problem explains it; the issue is not blamed for it.
    assert {p.path for p in loaded.problems} == {"glossary/deep-learning.md"}


# -- the public side --------------------------------------------------------------------


def _break_a_draft(root: Path) -> int:
    return set_field(root / "glossary" / "inference.md", "queued", "2026-13-45")


def test_one_broken_draft_leaves_the_archive_up_and_is_logged_once(client, published, caplog):
    line = _break_a_draft(published)
    caplog.set_level(logging.WARNING, logger="brief.web")
    for path in ("/", "/issues/", "/issues/002/", "/feed.xml", "/glossary/fine-tuning/"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    assert "Fine-Tuning · Mars Climate Orbiter" in client.get("/issues/").text
    logged = [r.getMessage() for r in caplog.records if "inference.md" in r.getMessage()]
    assert len(logged) == 1 and f"glossary/inference.md:{line}:" in logged[0], logged


def test_confirmation_with_a_broken_draft_confirms_and_sends_the_welcome(
    client, published, web_settings
):
    _break_a_draft(published)
    response = client.post(
        "/subscribe",
        data={"name": "Ann", "email": "ann@example.com", "list": "main", "website": ""},
    )
    assert response.status_code == 200
    link = link_in(outbox_messages(web_settings)[0], "confirm")
    done = client.post(link.removeprefix(web_settings.newsletter.base_url))
    assert done.status_code == 200, done.text
    welcome = outbox_messages(web_settings)[-1]
    assert welcome["Subject"] == "Welcome to The Brief"
    assert "https://brief.example.com/issues/002/" in body_text(welcome)


# -- property: whatever a field holds, the answer is a content error, never a crash --------

_FIELDS = (
    ("glossary/inference.md", ("term", "category", "queued", "priority", "slug", "extra")),
    ("museum/zillow-offers.md", ("title", "date", "cost", "sources", "queued", "priority")),
    (ISSUE, ("number", "date", "subject", "preheader", "glossary", "museum", "status")),
)


def _yaml_values():
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.dates()
        | st.datetimes()
        | st.text(max_size=20)
    )
    nested = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )
    dumped = nested.map(lambda v: yaml_dump(v))
    tagged = st.builds(
        "{} {}".format,
        st.sampled_from(["!!timestamp", "!!int", "!!float", "!!binary", "!!bool", "!!set"]),
        st.text(alphabet="0123456789-:.xT ", max_size=12),
    )
    datelike = st.builds(
        "{:04d}-{:02d}-{:02d}".format,
        st.integers(0, 9999),
        st.integers(0, 99),
        st.integers(0, 99),
    )
    raw = st.text(max_size=30).map(lambda t: t.replace("\n", " ").replace("\r", " "))
    return dumped | tagged | datelike | raw


def yaml_dump(value) -> str:
    import yaml

    return (
        yaml.safe_dump(value, default_flow_style=True, width=10**6)
        .strip()
        .removesuffix("\n...")
        .replace("\n", " ")
    )


def test_any_frontmatter_value_is_a_content_error_or_valid_never_a_crash(tmp_path_factory):
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pipeline.config import load_settings
    from pipeline.content.library import read_content
    from pipeline.render.site import pages
    from tests.conftest import REPO

    root = tmp_path_factory.mktemp("fuzz") / "newsletter"
    for name in ("glossary", "museum", "issues", "templates"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "brief.toml", root / "brief.toml")
    issue = root / ISSUE
    issue.write_text(issue.read_text(encoding="utf-8").replace("status: approved", "status: sent"))
    originals = {rel: (root / rel).read_text(encoding="utf-8") for rel, _ in _FIELDS}
    brief_settings = load_settings(root / "brief.toml", env={})
    targets = [(rel, field) for rel, fields in _FIELDS for field in fields]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(target=st.sampled_from(targets), value=_yaml_values())
    def check(target, value):
        rel, field = target
        for name, text in originals.items():
            (root / name).write_text(text, encoding="utf-8")
        set_field(root / rel, field, value)
        try:
            load_library(root)
        except ContentError as exc:
            assert all(p.line >= 1 for p in exc.problems)
        loaded = read_content(brief_settings)
        for page in pages(loaded.library, brief_settings).values():
            page.render()

    check()
