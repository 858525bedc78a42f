"""The ``brief lists|subscribers|db`` commands, run in-process on a SQLite project."""

from __future__ import annotations

import csv
import io
import json


def test_db_upgrade_reports_the_revision(brief):
    out = brief("db", "upgrade")
    assert out.code == 0, out.err
    assert "database at revision" in out.out


def test_add_show_and_count_through_the_cli(brief):
    out = brief("subscribers", "add", "Ann@Example.org", "--name", "Ann")
    assert out.code == 0, out.err
    assert "pending" in out.out and "/confirm/" not in out.out
    assert "confirmation email sent to Ann@example.org through outbox" in out.out
    shown = json.loads(brief("subscribers", "show", "ann@example.org", "--json").out)
    assert shown["email"] == "Ann@example.org"
    assert [e["kind"] for e in shown["events"]] == ["subscribed"]
    counts = json.loads(brief("subscribers", "count", "--json").out)
    assert counts == {"main": {"pending": 1, "confirmed": 0, "unsubscribed": 0}}


def test_bad_address_is_one_line_error_not_a_traceback(brief):
    out = brief("subscribers", "add", "evil\r\n@example.org")
    assert out.code == 1
    assert out.err.startswith("error: invalid email address")
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1


def test_import_prints_the_report_and_list_outputs_json_and_csv(brief, project):
    path = project / "people.csv"
    path.write_text("email,name\nann@example.org,Ann\nbad,\nann@example.org,Ann\n", "utf-8")
    out = brief("subscribers", "import", str(path), "--confirmed", "--source", "sheet")
    assert out.code == 0, out.err
    assert "imported 1" in out.out and "duplicates in the file 1" in out.out and "line 3" in out.out
    listed = json.loads(brief("subscribers", "list", "--json").out)
    assert [(r["email"], r["status"]) for r in listed] == [("ann@example.org", "confirmed")]
    rows = list(csv.DictReader(io.StringIO(brief("subscribers", "list", "--csv").out)))
    assert rows[0]["email"] == "ann@example.org"


def test_refused_import_exits_non_zero_with_the_reason(brief, project):
    path = project / "bad.csv"
    path.write_bytes(b"email\n\xff@example.org\n")
    out = brief("subscribers", "import", str(path))
    assert out.code == 1
    assert "line 2 is not UTF-8" in out.err


def test_lists_commands_and_forget(brief, project):
    assert brief("lists", "create", "weekly").code == 0
    assert "weekly" in brief("lists", "list").out
    brief("subscribers", "add", "ann@example.org", "--list", "weekly", "--confirmed")
    assert brief("lists", "delete", "weekly").code == 1
    assert brief("lists", "delete", "weekly", "--force").code == 0
    assert brief("subscribers", "forget", "ann@example.org", "--yes").code == 0
    out = brief("subscribers", "show", "ann@example.org")
    assert out.code == 1 and "suppressed: erased" in out.err


def test_export_writes_a_file(brief, project):
    brief("subscribers", "add", "ann@example.org", "--confirmed", "--source", "test")
    target = project / "export.csv"
    out = brief("subscribers", "export", "--out", str(target))
    assert out.code == 0, out.err
    assert "ann@example.org" in target.read_text("utf-8")


def test_unsubscribe_command_from_everything(brief):
    brief("subscribers", "add", "ann@example.org", "--confirmed", "--source", "test")
    out = brief("subscribers", "unsubscribe", "ann@example.org")
    assert out.code == 0, out.err
    assert "suppressed" in out.out
    shown = json.loads(brief("subscribers", "show", "ann@example.org", "--json").out)
    assert shown["suppressed"] == "unsubscribed"
