"""Moving in and out: lossless export → import, other tools' exports, the import report.

Issue 13, "What was measured" 1-5: each item has a test here that failed before the fix
(1: ``test_cli_export_then_import_keeps_who_left_out_and_where_everyone_was``; 2:
``test_mailchimp_names_are_stored``; 3: ``test_files_separated_by_other_delimiters_are_read``;
4: ``test_report_tells_people_already_on_the_list_from_duplicates_in_the_file`` and
``test_consent_time_from_the_file_is_kept_when_plausible``; 5:
``test_deduplication_work_grows_linearly_on_postgresql``).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pipeline.errors import ImportRefused, NotFound, StoreError
from pipeline.store import (
    add_subscriber,
    address_hash,
    audience_count,
    create_list,
    export_csv,
    forget,
    import_csv,
    show,
    suppress,
    unsubscribe_by_address,
)
from pipeline.store.schema import lists, memberships, subscribers, suppressions
from tests.conftest import REPO

SHAPES = REPO / "tests" / "imports"  # other tools' export shapes; sources in SOURCES.md


def _snapshot(engine) -> dict:
    """A store's state as comparable data: no ids, tokens or consent numbers (those are
    the database's own), everything a person or the law cares about."""
    with engine.connect() as conn:
        people = {
            r.email: (r.name, dict(r.attributes or {}), _utc(r.created_at))
            for r in conn.execute(sa.select(subscribers))
        }
        members = sorted(
            (
                r.email,
                r.list_name,
                r.status,
                r.consent_source,
                _utc(r.consent_at),
                _utc(r.confirmed_at),
                _utc(r.unsubscribed_at),
            )
            for r in conn.execute(
                sa.select(
                    subscribers.c.email,
                    lists.c.name.label("list_name"),
                    memberships.c.status,
                    memberships.c.consent_source,
                    memberships.c.consent_at,
                    memberships.c.confirmed_at,
                    memberships.c.unsubscribed_at,
                )
                .join(subscribers, subscribers.c.id == memberships.c.subscriber_id)
                .join(lists, lists.c.id == memberships.c.list_id)
            )
        )
        hashes = sorted(
            (r.address_hash, r.reason, r.source, _utc(r.created_at))
            for r in conn.execute(sa.select(suppressions))
        )
        names = sorted(conn.execute(sa.select(lists.c.name)).scalars())
    return {"lists": names, "people": people, "memberships": members, "suppressions": hashes}


def _utc(value):
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _every_state(store) -> None:
    """Every membership state, consent history, suppressions and erasures."""
    create_list(store, "weekly")
    create_list(store, "internal")
    add_subscriber(store, "ann@example.org", name="Ann", confirmed=True, source="form",
                   attributes={"city": "Paris"})  # fmt: skip
    add_subscriber(store, "ann@example.org", list_name="weekly", confirmed=True, source="form")
    add_subscriber(store, "bob@example.org", name="Bob")  # pending
    add_subscriber(store, "carl@example.org", confirmed=True, source="fair")
    add_subscriber(store, "carl@example.org", list_name="weekly", confirmed=True, source="fair")
    unsubscribe_by_address(store, "carl@example.org", list_name="main")  # left one list
    add_subscriber(store, "dora@example.org", confirmed=True, source="fair")
    unsubscribe_by_address(store, "dora@example.org")  # left everything: suppressed
    add_subscriber(store, "eve@example.org", confirmed=True, source="fair")
    suppress(store, "eve@example.org", "complaint", "=provider webhook")  # formula-like
    add_subscriber(store, "fay@example.org", confirmed=True, source="fair")
    forget(store, "fay@example.org")  # erased: only a hash stays
    forget(store, "never-here@example.org")  # an address erased before it came
    add_subscriber(store, "gus@example.org", confirmed=True, source="fair")
    unsubscribe_by_address(store, "gus@example.org")
    add_subscriber(store, "gus@example.org", list_name="internal")  # back, pending his click
    add_subscriber(store, "=cmd|x@example.org", name="=HYPERLINK(1)", confirmed=True,
                   source="-sheet")  # fmt: skip


def test_export_then_import_into_an_empty_store_reproduces_it(store, second_store, tmp_path):
    _every_state(store)
    out = tmp_path / "all.csv"
    export_csv(store, out, suppressions_out=tmp_path / "all.suppressions.csv")
    report = import_csv(
        second_store,
        out,
        confirmed=True,
        source="migration",
        suppressions=tmp_path / "all.suppressions.csv",
    )
    assert report.mapping == "Brief export"
    assert _snapshot(second_store) == _snapshot(store)
    # The erased stay erased and unreachable; who left cannot be put back by an operator.
    with pytest.raises(NotFound, match="erased"):
        show(second_store, "fay@example.org")
    for address in ("dora@example.org", "carl@example.org"):
        with pytest.raises(StoreError, match="left before"):
            add_subscriber(second_store, address, confirmed=True, source="oops")
    assert [e.kind for e in show(second_store, "carl@example.org").events].count(
        "unsubscribed"
    ) == 1
    for name in ("main", "weekly", "internal"):
        assert audience_count(second_store, name) == audience_count(store, name)


def test_cli_export_then_import_keeps_who_left_out_and_where_everyone_was(brief, project):
    # Issue 13, measured 1: frank left main, grace left everything, zed is on weekly only.
    assert brief("lists", "create", "weekly").code == 0
    for who in ("ann", "bob", "carl", "dora", "erin", "frank", "grace"):
        brief("subscribers", "add", f"{who}@example.org", "--confirmed", "--source", "form")
    brief("subscribers", "add", "zed@example.org", "--list", "weekly", "--confirmed",
          "--source", "fair")  # fmt: skip
    brief("subscribers", "unsubscribe", "frank@example.org", "--list", "main")
    brief("subscribers", "unsubscribe", "grace@example.org")
    before = json.loads(brief("subscribers", "list", "--json").out)
    out = brief("subscribers", "export", "--out", str(project / "all.csv"))
    assert out.code == 0, out.err

    fresh = project / "fresh.toml"
    fresh.write_text(
        (project / "brief.toml")
        .read_text("utf-8")
        .replace("sqlite:///.brief/brief.db", "sqlite:///.brief/fresh.db"),
        "utf-8",
    )
    out = brief("subscribers", "import", str(project / "all.csv"), "--confirmed", "--source",
                "migration", config=fresh)  # fmt: skip
    assert out.code == 0, out.err
    after = json.loads(brief("subscribers", "list", "--json", config=fresh).out)
    assert after == before
    assert "mapping: Brief export" in out.out
    assert "suppressions: 1 added" in out.out
    assert (project / "all.suppressions.csv").exists()
    counts = json.loads(brief("subscribers", "count", "--json", config=fresh).out)
    assert counts["main"] == {"pending": 0, "confirmed": 5, "unsubscribed": 2}
    assert counts["weekly"] == {"pending": 0, "confirmed": 1, "unsubscribed": 0}
    shown = json.loads(brief("subscribers", "show", "grace@example.org", "--json",
                             config=fresh).out)  # fmt: skip
    assert shown["suppressed"] == "unsubscribed"


def test_import_without_confirmed_keeps_consent_but_confirms_nobody(store, second_store, tmp_path):
    add_subscriber(store, "ann@example.org", confirmed=True, source="form")
    add_subscriber(store, "bob@example.org", confirmed=True, source="form")
    unsubscribe_by_address(store, "bob@example.org", list_name="main")
    export_csv(store, tmp_path / "all.csv")
    import_csv(second_store, tmp_path / "all.csv")
    ann = show(second_store, "ann@example.org").memberships[0]
    original = show(store, "ann@example.org").memberships[0]
    assert (ann.status, ann.confirmed_at) == ("pending", None)
    assert (ann.consent_source, ann.consent_at) == ("form", original.consent_at)
    assert show(second_store, "bob@example.org").memberships[0].status == "unsubscribed"


def test_status_column_records_leaving_but_never_brings_anyone_back(store, write_csv):
    add_subscriber(store, "ann@example.org", confirmed=True, source="form")
    unsubscribe_by_address(store, "ann@example.org", list_name="main")
    add_subscriber(store, "bob@example.org", confirmed=True, source="form")
    add_subscriber(store, "cy@example.org", confirmed=True, source="form")
    content = (
        "email,status\n"
        "ann@example.org,subscribed\n"  # left before: stays out
        "bob@example.org,unsubscribed\n"  # leaves now
        "cy@example.org,complained\n"  # suppressed
        "dee@example.org,unsubscribed\n"  # new, recorded as having left
        "eli@example.org,subscribed\n"
        "fay@example.org,maybe\n"  # unknown status: refused, never guessed
    )
    report = import_csv(store, write_csv(content), confirmed=True, source="sheet")
    assert report.as_dict() | {"invalid_rows": []} == {
        "rows": 6, "imported": 1, "unsubscribed": 2, "bounced": 1, "updated": 0,
        "already_on_list": 0, "duplicates": 0, "invalid": 1, "suppressed": 1,
        "dates_replaced": 0, "suppressions_added": 0, "mapping": "generic",
        "delimiter": ",", "lists_created": [], "invalid_rows": [],
    }  # fmt: skip
    assert "unknown status 'maybe'" in report.invalid_rows[0][1]
    for who in ("ann", "bob", "dee"):
        assert show(store, f"{who}@example.org").memberships[0].status == "unsubscribed"
    assert show(store, "cy@example.org").suppressed == "complaint"
    assert show(store, "eli@example.org").memberships[0].status == "confirmed"
    assert "unsubscribed" in [e.kind for e in show(store, "bob@example.org").events]
    assert audience_count(store, "main") == 1  # eli


def test_consent_time_from_the_file_is_kept_when_plausible(store, write_csv):
    # Issue 13, measured 4: the consent date column was ignored.
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    content = (
        "email,consent_source,consent_at\n"
        "ann@example.org,paper form,2019-05-01T10:00:00Z\n"
        f"bob@example.org,,{future}\n"
        "cy@example.org,,1970-01-01T00:00:00Z\n"
        "dee@example.org,,next tuesday\n"
        "eli@example.org,,2020-02-03 04:05:06\n"  # no zone: UTC
    )
    started = datetime.now(UTC)
    report = import_csv(store, write_csv(content), confirmed=True, source="sheet")
    ann = show(store, "ann@example.org").memberships[0]
    assert ann.consent_at == datetime(2019, 5, 1, 10, tzinfo=UTC)
    assert (report.imported, report.dates_replaced) == (5, 3)
    assert ann.consent_source == "paper form"
    assert show(store, "eli@example.org").memberships[0].consent_at == datetime(
        2020, 2, 3, 4, 5, 6, tzinfo=UTC
    )
    for who in ("bob", "cy", "dee"):
        member = show(store, f"{who}@example.org").memberships[0]
        assert member.consent_at >= started and member.consent_source == "sheet"


def test_report_tells_people_already_on_the_list_from_duplicates_in_the_file(store, write_csv):
    # Issue 13, measured 4: people already on the list were "skipped as duplicates".
    add_subscriber(store, "ann@example.org", name="Ann", confirmed=True, source="form")
    content = "email,name\nann@example.org,Ann\nbob@example.org,Bob\nBOB@example.org,Bob\n"
    report = import_csv(store, write_csv(content), confirmed=True, source="sheet")
    assert report.as_dict()["already_on_list"] == 1
    assert report.as_dict()["duplicates"] == 1
    assert report.as_dict()["imported"] == 1


def test_cli_report_names_each_outcome(brief, project):
    brief("subscribers", "add", "ann@example.org", "--confirmed", "--source", "form")
    path = project / "people.csv"
    path.write_text("email\nann@example.org\nbob@example.org\nbob@example.org\n", "utf-8")
    out = brief("subscribers", "import", str(path), "--confirmed", "--source", "sheet")
    assert out.code == 0, out.err
    assert "already on the list 1" in out.out and "duplicates in the file 1" in out.out
    assert "mapping: generic" in out.out


def test_same_address_on_two_lists_is_not_a_duplicate(store, write_csv):
    create_list(store, "weekly")
    content = "email,list\nann@example.org,main\nann@example.org,weekly\nann@example.org,main\n"
    report = import_csv(store, write_csv(content), confirmed=True, source="sheet")
    assert (report.imported, report.duplicates) == (2, 1)
    assert sorted(m.list_name for m in show(store, "ann@example.org").memberships) == [
        "main",
        "weekly",
    ]


def test_lists_named_in_the_file_are_created_and_reported(store, write_csv):
    report = import_csv(store, write_csv("email,list\nann@example.org,book-club\n"))
    assert report.lists_created == ["book-club"]
    assert show(store, "ann@example.org").memberships[0].list_name == "book-club"
    report = import_csv(store, write_csv("email,list\nbob@example.org,Not A Slug\n"))
    assert report.invalid == 1 and "list name" in report.invalid_rows[0][1]


def test_a_file_naming_too_many_new_lists_is_refused(store, write_csv):
    rows = "".join(f"p{i}@example.org,list-{i}\n" for i in range(101))
    with pytest.raises(ImportRefused, match="more than 100 lists"):
        import_csv(store, write_csv("email,list\n" + rows))
    assert lists_of(store) == []


def lists_of(store) -> list[str]:
    with store.connect() as conn:
        return sorted(conn.execute(sa.select(lists.c.name)).scalars())


def test_a_missing_default_list_refuses_the_file(store, write_csv):
    with pytest.raises(ImportRefused, match="no list named 'weekly'"):
        import_csv(store, write_csv("email\nann@example.org\n"), default_list="weekly")


def test_explicit_list_wins_over_the_files_list_column(store, write_csv):
    create_list(store, "weekly")
    path = write_csv("email,list\nann@example.org,main\n")
    import_csv(store, path, list_name="weekly")
    assert [m.list_name for m in show(store, "ann@example.org").memberships] == ["weekly"]


# --------------------------------------------------------------------------- delimiters


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_files_separated_by_other_delimiters_are_read(store, write_csv, delimiter):
    # Issue 13, measured 3: "no email column in the header row (found: email;name)".
    rows = [["email", "name", "city"], ["ann@example.org", "Ann, the first", "Paris"]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    report = import_csv(store, write_csv(buffer.getvalue()), confirmed=True, source="sheet")
    assert (report.imported, report.delimiter) == (1, delimiter)
    person = show(store, "ann@example.org")
    assert (person.name, person.attributes) == ("Ann, the first", {"city": "Paris"})


def test_missing_email_column_message_names_the_delimiter(store, write_csv):
    with pytest.raises(ImportRefused, match=r"read with delimiter ';'.*--map"):
        import_csv(store, write_csv("mail address;name\nann@example.org;Ann\n"))


# --------------------------------------------------------------------------- --map


def test_map_names_columns_for_files_of_any_shape(store, write_csv):
    content = "Kontakt,Vorname,Nachname,Seit,Ort\nann@example.org,Ann,Berg,2021-04-05,Wien\n"
    report = import_csv(
        store,
        write_csv(content),
        confirmed=True,
        source="sheet",
        mapping={
            "Kontakt": "email",
            "Vorname": "first_name",
            "Nachname": "last_name",
            "Seit": "consent_at",
        },  # fmt: skip
    )
    assert report.mapping == "generic + --map"
    person = show(store, "ann@example.org")
    assert (person.name, person.attributes) == ("Ann Berg", {"Ort": "Wien"})
    assert person.memberships[0].consent_at == datetime(2021, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"Nope": "email"}, "--map names column 'Nope'"),
        ({"email": "shoe_size"}, "unknown field 'shoe_size'"),
    ],
)
def test_bad_map_is_refused_with_the_reason(store, write_csv, mapping, message):
    with pytest.raises(ImportRefused, match=message):
        import_csv(store, write_csv("email\nann@example.org\n"), mapping=mapping)


def test_cli_map_option(brief, project):
    path = project / "people.csv"
    path.write_text("Kontakt;Name\nann@example.org;Ann\n", "utf-8")
    out = brief("subscribers", "import", str(path), "--map", "Kontakt=email")
    assert out.code == 0, out.err
    out = brief("subscribers", "import", str(path), "--map", "Kontakt")
    assert out.code != 0 and "COLUMN=FIELD" in out.err


# --------------------------------------------------------------------------- other tools


def test_mailchimp_names_are_stored(store):
    # Issue 13, measured 2: First Name / Last Name went to attributes, silently.
    report = import_csv(store, SHAPES / "mailchimp_subscribed.csv", confirmed=True,
                        source="mailchimp")  # fmt: skip
    ada = show(store, "ada@example.org")
    assert ada.name == "Ada Lovelace"
    assert report.mapping == "Mailchimp"
    assert ada.attributes == {"Company": "Analytical Engines", "tags": "Early readers"}
    member = ada.memberships[0]
    assert (member.status, member.consent_source) == ("confirmed", "mailchimp")
    assert member.consent_at == datetime(2019, 3, 1, 9, 15, tzinfo=UTC)
    assert member.confirmed_at == datetime(2019, 3, 1, 9, 20, tzinfo=UTC)
    assert show(store, "ben@example.org").name == "Ben"
    assert show(store, "cy@example.org").name is None


def test_mailchimp_unsubscribed_and_cleaned_files_are_imported_as_such(store):
    for name in ("mailchimp_unsubscribed.csv", "mailchimp_cleaned.csv"):
        import_csv(store, SHAPES / name, confirmed=True, source="mailchimp")
    dee = show(store, "dee@example.org")
    assert dee.memberships[0].status == "unsubscribed"
    assert dee.memberships[0].unsubscribed_at == datetime(2020, 7, 23, 12, 19, 27, tzinfo=UTC)
    assert dee.suppressed is None  # left one list (Mailchimp unsubscribes are per audience)
    eli = show(store, "eli@example.org")
    assert eli.suppressed == "hard_bounce"
    assert "bounced" in [e.kind for e in eli.events]
    assert audience_count(store, "main") == 0


def test_substack_export(store):
    report = import_csv(store, SHAPES / "substack_signup_emails.csv", confirmed=True,
                        source="substack")  # fmt: skip
    assert report.mapping == "Substack"
    assert (report.imported, report.unsubscribed, report.invalid) == (2, 1, 1)
    assert "deletion request" in report.invalid_rows[0][1]
    fay = show(store, "fay@example.org").memberships[0]
    assert fay.consent_at == datetime(2018, 8, 27, 15, 6, 27, 713000, tzinfo=UTC)
    assert show(store, "gil@example.org").memberships[0].status == "unsubscribed"


def test_ghost_export(store):
    report = import_csv(store, SHAPES / "ghost_members.csv", confirmed=True, source="ghost")
    assert report.mapping == "Ghost"
    ivy = show(store, "ivy@example.org")
    assert ivy.name == "Ivy Ng"
    assert ivy.attributes == {"note": "Met at the fair", "tags": "VIP,Early adopter",
                              "complimentary_plan": "false"}  # fmt: skip
    assert show(store, "jon@example.org").memberships[0].status == "unsubscribed"
    assert show(store, "kit@example.org").memberships[0].status == "confirmed"


def test_listmonk_export(store):
    report = import_csv(store, SHAPES / "listmonk_subscribers.csv", confirmed=True,
                        source="listmonk")  # fmt: skip
    assert report.mapping == "listmonk"
    lea = show(store, "lea@example.org")
    assert (lea.name, lea.attributes) == ("Lea Roth", {"city": "Graz", "plan": "pro"})
    assert lea.memberships[0].consent_at == datetime(2023, 5, 2, 11, 22, 33, 123456, tzinfo=UTC)
    assert show(store, "max@example.org").memberships[0].status == "unsubscribed"
    ned = show(store, "ned@example.org")  # blocklisted: left everything
    assert (ned.memberships[0].status, ned.suppressed) == ("unsubscribed", "unsubscribed")


def test_buttondown_export(store):
    report = import_csv(store, SHAPES / "buttondown_subscribers.csv", confirmed=True,
                        source="buttondown")  # fmt: skip
    assert report.mapping == "Buttondown"
    oli = show(store, "oli@example.org")
    assert oli.attributes == {"notes": "Long-time reader", "first_name": "Oli", "tags": "books"}
    assert oli.memberships[0].status == "confirmed"
    assert show(store, "pam@example.org").memberships[0].status == "pending"
    assert show(store, "quinn@example.org").memberships[0].status == "unsubscribed"
    assert show(store, "ray@example.org").suppressed == "hard_bounce"


# --------------------------------------------------------------------------- suppressions file


def test_suppressions_file_travels_and_a_bad_one_changes_nothing(store, second_store, tmp_path):
    forget(store, "fay@example.org")
    suppress(store, "eve@example.org", "hard_bounce", "webhook")
    people = tmp_path / "all.csv"
    hashes = tmp_path / "all.suppressions.csv"
    assert export_csv(store, people, suppressions_out=hashes) == 0
    text = hashes.read_text("utf-8")
    assert "fay@" not in text and address_hash("fay@example.org") in text
    assert (hashes.stat().st_mode & 0o777) == 0o600
    broken = tmp_path / "broken.csv"
    broken.write_text(text + "not-a-hash,erased,x,2020-01-01T00:00:00+00:00\n", "utf-8")
    with pytest.raises(ImportRefused, match=r"broken.csv line 4"):
        import_csv(second_store, people, suppressions=broken)
    assert _snapshot(second_store)["suppressions"] == []
    report = import_csv(second_store, people, suppressions=hashes)
    assert report.suppressions_added == 2
    assert _snapshot(second_store)["suppressions"] == _snapshot(store)["suppressions"]


def test_a_file_row_for_an_address_the_file_says_was_erased_is_refused(store, write_csv, tmp_path):
    hashes = tmp_path / "s.csv"
    hashes.write_text(
        "address_hash,reason,source,created_at\n"
        f"{address_hash('fay@example.org')},erased,cli,2024-01-01T00:00:00+00:00\n",
        "utf-8",
    )
    report = import_csv(store, write_csv("email\nfay@example.org\n"), suppressions=hashes)
    assert (report.imported, report.suppressed) == (0, 1)
    with pytest.raises(NotFound):
        show(store, "fay@example.org")


# --------------------------------------------------------------------------- linear dedup


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_deduplication_work_grows_linearly_on_postgresql(store, write_csv):
    """Issue 13, measured 5: the de-duplication compared every copy of an address with
    every earlier one (N²/2 rows thrown away by a join filter). The rows PostgreSQL
    examines and discards must stay proportional to N. Work, not time, is counted."""
    copies = 3000
    plans: list = []

    @sa.event.listens_for(store, "before_cursor_execute")
    def explain(conn, cursor, statement, parameters, context, executemany):
        if plans or not statement.lstrip().upper().startswith("DELETE FROM BRIEF_IMPORT_STAGE"):
            return
        cursor.execute("SAVEPOINT brief_explain")
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        plans.append(cursor.fetchone()[0])
        cursor.execute("ROLLBACK TO SAVEPOINT brief_explain")

    path = write_csv("email\n" + "ann@example.org\n" * copies)
    report = import_csv(store, path, confirmed=True, source="bench")
    assert (report.imported, report.duplicates) == (1, copies - 1)
    discarded = sum(_removed(node) for node in _nodes(plans[0][0]["Plan"]))
    assert discarded < 4 * copies, f"{discarded} rows discarded for {copies} copies"


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _removed(node: dict) -> int:
    return int(node.get("Rows Removed by Join Filter", 0)) + int(
        node.get("Rows Removed by Filter", 0)
    )
