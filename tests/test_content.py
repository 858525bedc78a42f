"""The content validator: every problem named as path:line, all of them in one run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.content.library import GLOSSARY_SECTIONS, load_library
from pipeline.errors import ContentError
from tests.conftest import REPO, SAMPLE


def problems_of(root: Path, settings=None) -> list[str]:
    from functools import partial

    from pipeline.content.calendar import is_slot_date

    is_slot = partial(is_slot_date, settings.schedule) if settings else None
    with pytest.raises(ContentError) as info:
        load_library(root, is_slot)
    return [str(p) for p in info.value.problems]


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(needle)


def test_shipped_content_is_clean(settings):
    from functools import partial

    from pipeline.content.calendar import is_slot_date

    lib = load_library(settings.root, partial(is_slot_date, settings.schedule))
    assert len(lib.glossary) >= 6 and len(lib.museum) >= 4
    assert lib.issues[0].glossary == ("deep-learning",)


def _paragraphs(text: str) -> list[str]:
    return [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _plain(markdown: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"\1", markdown)


def test_shipped_deep_learning_reproduces_every_section_of_the_sample():
    entry = load_library(REPO).glossary["deep-learning"]
    sample = SAMPLE.read_text(encoding="utf-8")
    body = sample.split("The Technical Definition\n", 1)[1].split("Get the next Brief", 1)[0]
    # The sample's section headings, in order, are the content model's.
    heads = [h for h in GLOSSARY_SECTIONS if f"\n{h}\n" in "\nThe Technical Definition\n" + body]
    assert heads == list(GLOSSARY_SECTIONS)
    assert [s.title for s in entry.sections] == list(GLOSSARY_SECTIONS)
    # Every paragraph of the sample is in the entry, word for word.
    ours = " ".join(_paragraphs(_plain(" \n\n".join(s.markdown for s in entry.sections))))
    for para in _paragraphs(body):
        if para in GLOSSARY_SECTIONS:
            continue
        para = re.sub(r"^\d+\.\s+", "", para)
        assert para in ours, para[:80]
    assert entry.term == "Deep Learning"
    assert entry.category == "Models & Architecture"
    assert entry.vendor_meaning == "advanced AI with neural networks."
    assert [q.question for q in entry.questions] == [
        "Why deep learning instead of a simpler model?",
        "How do we explain the model’s decisions when asked?",
        "What does retraining cost, and how often will we do it?",
    ]
    assert entry.vendor_says.startswith("“Our deep learning system")
    assert entry.in_practice.startswith("It delivered state-of-the-art accuracy")


def test_missing_field_names_the_file_and_line(project):
    path = project / "glossary" / "fine-tuning.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"^category:.*\n", "", text, count=1, flags=re.M), encoding="utf-8")
    assert "glossary/fine-tuning.md:2: missing field 'category'" in problems_of(project)


def test_missing_section_is_reported(project):
    path = project / "glossary" / "hallucination.md"
    rewrite(path, "## Reality Check", "## Realty Check")
    found = problems_of(project)
    line = line_of(path, "## Realty Check")
    assert (
        f"glossary/hallucination.md:{line}: unexpected section 'Realty Check' "
        "(expected, in order: " + "; ".join(GLOSSARY_SECTIONS) + ")" in found
    )
    assert any(
        p.startswith("glossary/hallucination.md:") and p.endswith("missing section 'Reality Check'")
        for p in found
    )


def test_out_of_order_section_names_its_line(project):
    path = project / "museum" / "knight-capital.md"
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("## What Happened", 1)
    happened, rest = rest.split("## Why It Happened", 1)
    path.write_text(
        head + "## Why It Happened" + rest.rstrip("\n") + "\n\n## What Happened" + happened,
        encoding="utf-8",
    )
    line = line_of(path, "## What Happened")
    assert (
        f"museum/knight-capital.md:{line}: section 'What Happened' is out of order: "
        "it comes before 'The Lesson'"
    ) in problems_of(project)


def test_unknown_slug_in_an_issue_names_the_list_item(project):
    path = next((project / "issues").glob("001-*.md"))
    rewrite(path, "- knight-capital", "- knight-capitol")
    line = line_of(path, "- knight-capitol")
    assert f"issues/{path.name}:{line}: unknown museum slug 'knight-capitol'" in problems_of(
        project
    )


def test_duplicate_slug_is_reported(project):
    src = project / "glossary" / "inference.md"
    copy = project / "glossary" / "inference-again.md"
    copy.write_text(
        src.read_text(encoding="utf-8").replace("---\n", "---\nslug: inference\n", 1),
        encoding="utf-8",
    )
    found = problems_of(project)
    assert (
        "glossary/inference.md:1: duplicate slug 'inference' (also glossary/inference-again.md)"
        in found
    )


def test_entry_used_by_two_issues_is_reported(project, settings):
    first = next((project / "issues").glob("001-*.md"))
    second = project / "issues" / "002-2026-12-16.md"
    second.write_text(
        first.read_text(encoding="utf-8")
        .replace("number: 1", "number: 2")
        .replace("date: 2026-12-02", "date: 2026-12-16")
        .replace("- knight-capital", "- zillow-offers"),
        encoding="utf-8",
    )
    line = line_of(second, "- deep-learning")
    assert (
        f"issues/002-2026-12-16.md:{line}: glossary entry 'deep-learning' is already used by "
        f"issues/{first.name}"
    ) in problems_of(project, settings)


def test_issue_date_off_the_cadence_is_reported(project, settings):
    first = next((project / "issues").glob("001-*.md"))
    off = project / "issues" / "002-2026-12-09.md"
    off.write_text(
        first.read_text(encoding="utf-8")
        .replace("number: 1", "number: 2")
        .replace("date: 2026-12-02", "date: 2026-12-09")
        .replace("- deep-learning", "- fine-tuning")
        .replace("- knight-capital", "- zillow-offers"),
        encoding="utf-8",
    )
    line = line_of(off, "date: 2026-12-09")
    assert (
        f"issues/002-2026-12-09.md:{line}: date 2026-12-09 is not a send slot on the "
        "every-other-Wednesday cadence"
    ) in problems_of(project, settings)


def test_bad_yaml_names_the_line(project):
    path = project / "museum" / "zillow-offers.md"
    rewrite(path, "organisation: ", "organisation: [unclosed, ")
    found = problems_of(project)
    assert len([p for p in found if p.startswith("museum/zillow-offers.md:")]) == 1
    assert re.match(
        r"museum/zillow-offers\.md:\d+: bad YAML in frontmatter: ",
        [p for p in found if "zillow" in p][0],
    )


def test_every_problem_is_reported_in_one_run(project):
    rewrite(project / "glossary" / "model-drift.md", "## The Questions to Ask", "## Questions")
    rewrite(project / "museum" / "mars-climate-orbiter.md", "cost:", "kost:")
    path = next((project / "issues").glob("001-*.md"))
    rewrite(path, "status: approved", "status: published")
    found = problems_of(project)
    files = {p.split(":")[0] for p in found}
    assert {
        "glossary/model-drift.md",
        "museum/mars-climate-orbiter.md",
        f"issues/{path.name}",
    } <= files
    assert any("unknown field 'kost'" in p for p in found)
    assert any("status 'published' must be one of: draft, approved, sent" in p for p in found)


def test_questions_must_be_a_numbered_list(project):
    path = project / "glossary" / "inference.md"
    text = path.read_text(encoding="utf-8")
    head, questions = text.split("## The Questions to Ask", 1)
    path.write_text(head + "## The Questions to Ask\n\nAsk good questions.\n", encoding="utf-8")
    line = line_of(path, "## The Questions to Ask")
    assert (
        f"glossary/inference.md:{line}: The Questions to Ask must be a numbered list (1. 2. 3.)"
    ) in problems_of(project)


def test_reality_check_needs_both_labelled_paragraphs(project):
    path = project / "glossary" / "machine-learning.md"
    rewrite(path, "**What that means in practice:**", "In practice:")
    line = line_of(path, "## Reality Check")
    assert (
        f"glossary/machine-learning.md:{line}: Reality Check needs a paragraph starting "
        "'**What that means in practice:**'"
    ) in problems_of(project)


def test_museum_source_must_be_a_url(project):
    path = project / "museum" / "knight-capital.md"
    rewrite(path, "  - https://www.sec.gov/news/press-release/2013-222", "  - the SEC website")
    line = line_of(path, "  - the SEC website")
    assert (
        f"museum/knight-capital.md:{line}: source 'the SEC website' is not an http(s) URL"
        in problems_of(project)
    )


def test_non_utf8_file_is_reported_not_crashed(project):
    path = project / "museum" / "broken.md"
    path.write_bytes(b"---\ntitle: caf\xe9\n---\n")
    assert "museum/broken.md:2: not valid UTF-8 text" in problems_of(project)
