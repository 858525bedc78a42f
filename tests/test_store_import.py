"""CSV import and export: report figures, refusals, suppression, round trip."""

from __future__ import annotations

import io

import pytest

from pipeline.errors import ImportRefused, StoreError
from pipeline.store import (
    add_subscriber,
    audience_count,
    count,
    export_csv,
    forget,
    import_csv,
    show,
    suppress,
    unsubscribe_by_address,
)

MIXED = (
    "Email,Name,City\n"
    "ann@example.org,Ann,Paris\n"  # line 2: new
    "bob@example.org,Bob,\n"  # line 3: new
    "ANN@example.org,Ann again,Rome\n"  # line 4: duplicate of line 2 within the file
    "not-an-address,Nobody,\n"  # line 5: invalid
    "carl@example.org,Carl,Oslo\n"  # line 6: already on the list, name changes -> updated
    "dora@example.org,Dora,\n"  # line 7: already on the list, nothing new
    "eve@example.org,Eve,\n"  # line 8: suppressed (complaint)
    "fay@example.org,Fay,\n"  # line 9: unsubscribed from this list
    '"gus@example.org","Gus\r\nBcc: x@example.org",\n'  # line 10: header injection in name
)


def _prepare(store):
    add_subscriber(store, "carl@example.org", name="Charles", confirmed=True)
    add_subscriber(store, "dora@example.org", name="Dora", confirmed=True)
    add_subscriber(store, "eve@example.org", confirmed=True)
    suppress(store, "eve@example.org", "complaint", "provider webhook")
    add_subscriber(store, "fay@example.org", confirmed=True)
    unsubscribe_by_address(store, "fay@example.org", list_name="main")


def test_import_report_counts_each_outcome(store, write_csv):
    _prepare(store)
    report = import_csv(store, write_csv(MIXED), confirmed=True, source="signup sheet")
    assert (report.rows, report.imported, report.updated) == (9, 2, 1)
    assert (report.duplicates, report.already_on_list) == (1, 1)  # ann twice; dora known
    assert (report.invalid, report.suppressed) == (2, 2)
    assert [line for line, _ in report.invalid_rows] == [5, 10]
    assert "@-sign" in report.invalid_rows[0][1]
    assert "line break" in report.invalid_rows[1][1]
    assert show(store, "ann@example.org").name == "Ann"  # first occurrence wins
    assert show(store, "ann@example.org").attributes == {"City": "Paris"}
    assert show(store, "carl@example.org").name == "Carl"
    assert show(store, "fay@example.org").memberships[0].status == "unsubscribed"
    # carl, dora and the two new people; eve is suppressed, fay left.
    assert audience_count(store, "main") == 4


def test_import_is_logged_in_each_persons_history(store, write_csv):
    import_csv(store, write_csv("email\nann@example.org\n"), source="fair stand")
    events = show(store, "ann@example.org").events
    assert [(e.kind, e.source) for e in events] == [("imported", "fair stand")]
    assert show(store, "ann@example.org").memberships[0].status == "pending"


def test_reimporting_the_same_file_changes_nothing(store, write_csv):
    path = write_csv("email,name\nann@example.org,Ann\nbob@example.org,Bob\n")
    import_csv(store, path, confirmed=True, source="sheet")
    again = import_csv(store, path, confirmed=True, source="sheet")
    assert (again.imported, again.updated, again.already_on_list) == (0, 0, 2)
    assert again.duplicates == 0  # none within the file


def test_reimport_after_forget_stays_suppressed(store, write_csv):
    path = write_csv("email,name\nann@example.org,Ann\n")
    import_csv(store, path, confirmed=True, source="sheet")
    forget(store, "ann@example.org")
    report = import_csv(store, path, confirmed=True, source="sheet")
    assert (report.imported, report.suppressed) == (0, 1)
    assert audience_count(store, "main") == 0


def test_import_never_confirms_a_pending_resubscription(store, write_csv):
    add_subscriber(store, "ann@example.org", confirmed=True)
    unsubscribe_by_address(store, "ann@example.org", list_name="main")
    add_subscriber(store, "ann@example.org")  # pending: waiting for her own click
    report = import_csv(store, write_csv("email\nann@example.org\n"), confirmed=True, source="x")
    assert report.already_on_list == 1
    assert audience_count(store, "main") == 0


def test_confirmed_import_needs_a_source(store, write_csv):
    with pytest.raises(StoreError, match="--source"):
        import_csv(store, write_csv("email\nann@example.org\n"), confirmed=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"email,name\nann@example.org,Ann\nbob@example.org,B\xe9b\n", "line 3 is not UTF-8"),
        ("name,city\nAnn,Paris\n", "no email column"),
        ("email,name\nann@example.org,Ann\nbob@example.org\n", "line 3: expected 2 fields"),
        ("email,name\nann@example.org,Ann,extra\n", "expected 2 fields"),
        ("", "empty"),
        ('email,name\nann@example.org,"Ann\n', "malformed CSV"),
        ("email,email\nann@example.org,ann@example.org\n", "twice"),
    ],
)
def test_malformed_file_is_refused_and_changes_nothing(store, write_csv, content, message):
    add_subscriber(store, "zed@example.org", confirmed=True)
    before = count(store)
    with pytest.raises(ImportRefused, match=message):
        import_csv(store, write_csv(content), confirmed=True, source="sheet")
    assert count(store) == before
    with pytest.raises(StoreError):
        show(store, "ann@example.org")


def test_missing_file_is_refused(store, tmp_path):
    with pytest.raises(ImportRefused, match="cannot read"):
        import_csv(store, tmp_path / "nope.csv")


def test_import_accepts_a_bom_crlf_and_quoted_multiline_attributes(store, write_csv):
    content = '\ufeffEMAIL,Name,Note\r\nann@example.org,Ann,"two\nlines"\r\n\r\n'
    report = import_csv(store, write_csv(content))
    assert report.invalid == 1 and "line break" in report.invalid_rows[0][1]
    report = import_csv(store, write_csv("\ufeffEMAIL,Name\r\nann@example.org,Ann\r\n"))
    assert report.imported == 1


def test_import_handles_unicode_domains_and_local_parts(store, write_csv):
    report = import_csv(
        store,
        write_csv("email\nkim@xn--bcher-kva.de\nkim@BÜCHER.de\njörg@例え.jp\n"),
        confirmed=True,
        source="sheet",
    )
    assert (report.imported, report.duplicates) == (2, 1)
    assert show(store, "kim@bücher.de").email == "kim@bücher.de"


def test_overlong_fields_are_refused_per_row(store, write_csv):
    content = (
        "email,name,bio\n"
        f"ann@example.org,{'x' * 201},\n"
        f"bob@example.org,Bob,{'y' * 1001}\n"
        f"{'c' * 300}@example.org,Carl,\n"
        "dan@example.org,Dan,short\n"
    )
    report = import_csv(store, write_csv(content))
    assert report.imported == 1
    assert [line for line, _ in report.invalid_rows] == [2, 3, 4]


def test_export_round_trips_through_import(store, write_csv, tmp_path):
    import_csv(
        store,
        write_csv("email,name,city\nann@example.org,Ann,Paris\nbob@example.org,,\n"),
        confirmed=True,
        source="sheet",
    )
    buffer = io.StringIO()
    assert export_csv(store, buffer, list_name="main") == 2
    text = buffer.getvalue()
    assert text.splitlines()[0].startswith("email,name,list,status")
    forget(store, "bob@example.org")
    report = import_csv(store, write_csv(text), confirmed=True, source="restore")
    assert (report.already_on_list, report.suppressed, report.imported) == (1, 1, 0)
    assert show(store, "ann@example.org").attributes == {"city": "Paris"}
    out = tmp_path / "out.csv"
    assert export_csv(store, out) == 1
    assert "ann@example.org" in out.read_text(encoding="utf-8")
