"""``brief lists``, ``brief subscribers`` and ``brief db``: thin click wrappers over pipeline.store.

People get rich tables; machines get ``--json`` or ``--csv``. Errors are BriefErrors,
printed as one line by the main CLI.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from pipeline.cli.main import print_table
from pipeline.errors import ProviderError, StoreError
from pipeline.send.notices import send_confirmation
from pipeline.store import (
    add_subscriber,
    count,
    create_list,
    delete_list,
    export_csv,
    forget,
    import_csv,
    list_subscribers,
    show,
    unsubscribe_by_address,
    upgrade,
)
from pipeline.store import lists as all_lists
from pipeline.store.copy import copy_store
from pipeline.store.importer import neutralise, suppressions_beside
from pipeline.store.lists import Visibility, find_list, update_list


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _text(value: Any):  # type: ignore[no-untyped-def]
    """A table cell that shows user data literally (no rich markup interpretation)."""
    from rich.text import Text

    if value is None:
        return Text("")
    if isinstance(value, datetime):
        return Text(value.strftime("%Y-%m-%d %H:%M"))
    return Text(str(value))


# Columns that hold an address: never cut to "dave@example.c…" (folded in a terminal).
ADDRESS_COLUMNS = frozenset({"email", "address"})


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold" if col in ADDRESS_COLUMNS else "ellipsis")
    for row in rows:
        table.add_row(*[_text(v) for v in row])
    print_table(table, _console())


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_default, ensure_ascii=False))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


class _Echo:
    """A text stream over click.echo, so output follows click's (and tests') stdout."""

    def write(self, text: str) -> int:
        click.echo(text, nl=False)
        return len(text)


def _default_list(env: Any) -> str:
    return env.settings.newsletter.default_list


def _link(env: Any, kind: str, token: str) -> str:
    return f"{env.settings.newsletter.base_url}/{kind}/{token}"


# --------------------------------------------------------------------------- lists


@click.group()
def lists() -> None:
    """Create, list and delete subscriber lists."""


@lists.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the list is for.")
@click.option("--title", default="", help="What subscribers see (default: the name).")
@click.option("--private", is_flag=True, help="Never offer it on the public forms.")
@click.pass_obj
def lists_create(env: Any, name: str, description: str, title: str, private: bool) -> None:
    """Create a list NAME (lower-case letters, digits, - and _)."""
    visibility = Visibility.PRIVATE if private else Visibility.PUBLIC
    create_list(env.engine(), name, description, title=title, visibility=visibility)
    click.echo(f"created {visibility.value} list {name}" + (f" ({title.strip()})" if title else ""))


@lists.command("edit")
@click.argument("name")
@click.option("--title", default=None, help='What subscribers see ("": show the name).')
@click.option("--private", "visibility", flag_value="private", help="Off the public forms.")
@click.option("--public", "visibility", flag_value="public", help="Offered on the forms.")
@click.pass_obj
def lists_edit(env: Any, name: str, title: str | None, visibility: str | None) -> None:
    """Change list NAME's title or visibility."""
    update_list(
        env.engine(),
        name,
        title=title,
        visibility=Visibility(visibility) if visibility else None,
    )
    click.echo(f"list {name} updated")


@lists.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def lists_list(env: Any, as_json: bool) -> None:
    """Show every list with its member counts."""
    found = all_lists(env.engine())
    if as_json:
        _json([f.__dict__ for f in found])
        return
    _table(
        "Lists",
        ["name", "title", "visibility", "pending", "confirmed", "unsubscribed", "created"],
        [
            [f.name, f.title, f.visibility, f.pending, f.confirmed, f.unsubscribed, f.created_at]
            for f in found
        ],
    )


@lists.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even if the list has members.")
@click.pass_obj
def lists_delete(env: Any, name: str, force: bool) -> None:
    """Delete list NAME (refused while it has members, unless --force)."""
    removed = delete_list(env.engine(), name, force=force)
    click.echo(f"deleted list {name} ({removed} membership(s) removed)")


# --------------------------------------------------------------------------- subscribers


@click.group()
def subscribers() -> None:
    """Manage subscribers, consent, import and export."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", help="The person's name.")
@click.option("--list", "list_name", help="List (default: newsletter.default_list).")
@click.option(
    "--confirmed",
    is_flag=True,
    help="Consent is already confirmed (skip double opt-in); needs --source.",
)
@click.option("--source", default=None, help="Where the consent came from.")
@click.pass_obj
def subscribers_add(
    env: Any,
    email: str,
    name: str | None,
    list_name: str | None,
    confirmed: bool,
    source: str | None,
) -> None:
    """Subscribe EMAIL; without --confirmed they get a confirmation email (double opt-in)."""
    engine = env.engine()
    result = add_subscriber(
        engine,
        email,
        name=name,
        list_name=list_name or _default_list(env),
        confirmed=confirmed,
        source=source or "cli",
    )
    what = "added" if result.changed else "unchanged:"
    click.echo(f"{what} {result.email} on {result.list_name} ({result.status})")
    if result.needs_confirmation and result.confirm_token:
        _send_confirmation(env, engine, result, name)


def _send_confirmation(env: Any, engine: Any, result: Any, name: str | None) -> None:
    """Mail the pending member their link; the link itself is theirs, never printed."""
    if name is None:
        name = show(engine, result.email).name  # greet a returning person by their name
    provider = env.settings.provider.name

    found = find_list(engine, result.list_name)
    sent = send_confirmation(
        env.settings,
        result.email,
        name,
        result.list_name,
        result.confirm_token,
        list_title=found.title if found is not None else "",
    )
    if not sent.ok:
        raise ProviderError(
            f"confirmation email to {result.email} not sent through {provider}: {sent.reason} "
            "(the membership stays pending; run the same add again to re-send)"
        )
    click.echo(f"confirmation email sent to {result.email} through {provider}")


@subscribers.command("list")
@click.option("--list", "list_name", help="Only this list.")
@click.option(
    "--status",
    type=click.Choice(["pending", "confirmed", "unsubscribed"]),
    help="Only this status.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (an array, streamed).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.pass_obj
def subscribers_list(
    env: Any, list_name: str | None, status: str | None, as_json: bool, as_csv: bool
) -> None:
    """List memberships, optionally of one list and status."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    rows = list_subscribers(env.engine(), list_name=list_name, status=status)
    fields = ["email", "name", "list", "status", "consent_source", "consent_at", "confirmed_at"]
    if as_csv:
        writer = csv.writer(_Echo(), lineterminator="\n")
        writer.writerow(fields)
        for r in rows:
            cells = [r.email, r.name or "", r.list_name, r.status, r.consent_source]
            cells += [d.isoformat() if d else "" for d in (r.consent_at, r.confirmed_at)]
            writer.writerow([neutralise(c) for c in cells])  # no formulas for spreadsheets
        return
    if as_json:
        # Streamed element by element so a large list never sits in memory.
        first = True
        click.echo("[")
        for r in rows:
            item = {
                "email": r.email,
                "name": r.name,
                "list": r.list_name,
                "status": r.status,
                "consent_source": r.consent_source,
                "consent_at": r.consent_at,
                "confirmed_at": r.confirmed_at,
                "unsubscribed_at": r.unsubscribed_at,
                "attributes": r.attributes,
            }
            text = json.dumps(item, default=_default, ensure_ascii=False)
            click.echo(("  " if first else ", ") + text)
            first = False
        click.echo("]")
        return
    _table(
        "Subscribers",
        ["email", "name", "list", "status", "source", "since"],
        [[r.email, r.name, r.list_name, r.status, r.consent_source, r.consent_at] for r in rows],
    )


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def subscribers_show(env: Any, email: str, as_json: bool) -> None:
    """Show EMAIL's memberships and full consent history."""
    d = show(env.engine(), email)
    if as_json:
        _json(
            {
                "email": d.email,
                "name": d.name,
                "attributes": d.attributes,
                "created_at": d.created_at,
                "suppressed": d.suppressed,
                "memberships": [m.__dict__ for m in d.memberships],
                "events": [e.__dict__ for e in d.events],
                "preferences_url": _link(env, "preferences", d.preferences_token),
                "unsubscribe_all_url": _link(env, "unsubscribe", d.unsubscribe_all_token),
            }
        )
        return
    out = _console()
    from rich.text import Text

    out.print(Text(f"{d.email}  {d.name or ''}".rstrip()))
    out.print(Text(f"since {d.created_at:%Y-%m-%d %H:%M} UTC"))
    if d.attributes:
        out.print(Text("attributes: " + json.dumps(d.attributes, ensure_ascii=False)))
    if d.suppressed:
        out.print(Text(f"suppressed: {d.suppressed}"))
    _table(
        "Memberships",
        ["list", "status", "source", "consent", "confirmed", "unsubscribed"],
        [
            [
                m.list_name,
                m.status,
                m.consent_source,
                m.consent_at,
                m.confirmed_at,
                m.unsubscribed_at,
            ]
            for m in d.memberships
        ],
    )
    _table(
        "History",
        ["when", "event", "list", "source", "detail"],
        [[e.at, e.kind, e.list_name, e.source, e.detail] for e in d.events],
    )


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_name", help="Only this list (default: every list, and suppress).")
@click.option("--source", default="cli", help="Why / who (recorded in the history).")
@click.pass_obj
def subscribers_unsubscribe(env: Any, email: str, list_name: str | None, source: str) -> None:
    """Unsubscribe EMAIL from one list, or from everything (which also suppresses)."""
    if "@" not in email:
        raise StoreError(f"{email!r} is not an email address")
    changed = unsubscribe_by_address(env.engine(), email, list_name=list_name, source=source)
    where = list_name or "every list (address suppressed)"
    click.echo(f"unsubscribed from {where}: {changed} membership(s) changed")


def _map_pairs(_ctx: Any, _param: Any, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        column, sep, field = value.partition("=")
        if not sep or not column.strip() or not field.strip():
            raise click.BadParameter(f"{value!r}: write COLUMN=FIELD, e.g. 'E-Mail-Adresse=email'")
        pairs[column.strip()] = field.strip()
    return pairs


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--list", "list_name", help="Put every row on this list (default: the file's "
              "list column, else newsletter.default_list).")  # fmt: skip
@click.option(
    "--confirmed",
    is_flag=True,
    help="Consent already confirmed; needs --source. Without it rows are pending, unmailed.",
)
@click.option("--source", default=None, help="Where the consent was collected.")
@click.option(
    "--map",
    "mapping",
    multiple=True,
    callback=_map_pairs,
    metavar="COLUMN=FIELD",
    help="Say what a column holds (repeatable): email, name, first_name, last_name, status, "
    "list, consent_source, consent_at, confirmed_at, unsubscribed_at, attributes, tags, "
    "attribute, ignore.",
)
@click.option(
    "--suppressions",
    type=click.Path(dir_okay=False),
    help="An export's suppressions file (default: FILE's .suppressions.csv beside it, if any).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def subscribers_import(
    env: Any,
    file: str,
    list_name: str | None,
    confirmed: bool,
    source: str | None,
    mapping: dict[str, str],
    suppressions: str | None,
    as_json: bool,
) -> None:
    """Import FILE.csv: a Brief export, another tool's export, or any sheet with an email column.

    Mailchimp, Substack, Ghost, listmonk and Buttondown exports are recognised by their
    header row; the report says which mapping was used. Import is silent: rows imported
    without --confirmed stay pending and get no email. To ask one of them, run
    `brief subscribers add EMAIL`, which sends the confirmation.
    """
    if suppressions is None and suppressions_beside(file).is_file():
        suppressions = str(suppressions_beside(file))
    report = import_csv(
        env.engine(),
        file,
        list_name,
        confirmed=confirmed,
        source=source,
        default_list=_default_list(env),
        mapping=mapping,
        suppressions=suppressions,
    )
    if as_json:
        _json(report.as_dict())
        return
    delimiter = "tab" if report.delimiter == "\t" else report.delimiter
    click.echo(f"mapping: {report.mapping} (delimiter {delimiter})")
    click.echo(
        f"read {report.rows} row(s): imported {report.imported}, "
        f"recorded as unsubscribed {report.unsubscribed}, "
        f"recorded as bounced or complained {report.bounced}, updated {report.updated}, "
        f"already on the list {report.already_on_list}, "
        f"duplicates in the file {report.duplicates}, refused as invalid {report.invalid}, "
        f"refused as suppressed or unsubscribed {report.suppressed}"
    )
    if report.lists_created:
        click.echo(f"lists created: {', '.join(report.lists_created)}")
    if report.dates_replaced:
        click.echo(
            f"{report.dates_replaced} row(s) had an unreadable or implausible time "
            "(before 1990 or in the future): the import time was recorded instead"
        )
    if suppressions is not None:
        click.echo(
            f"suppressions: {report.suppressions_added} added from {Path(suppressions).name}"
        )
    for line, reason in report.invalid_rows:
        click.echo(f"  line {line}: {reason}")
    if report.invalid > len(report.invalid_rows):
        click.echo(f"  ... and {report.invalid - len(report.invalid_rows)} more invalid row(s)")


@subscribers.command("export")
@click.option("--list", "list_name", help="Only this list.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
@click.option(
    "--suppressions",
    type=click.Path(dir_okay=False),
    help="Write the suppressions here (default with --out: FILE.suppressions.csv beside it).",
)
@click.pass_obj
def subscribers_export(
    env: Any, list_name: str | None, out: str | None, suppressions: str | None
) -> None:
    """Export memberships as CSV, and the suppressions (hashes) as a second file.

    `brief subscribers import FILE` in another store reads both and gives the same
    people, lists, statuses and consent back."""
    if suppressions is None and out:
        suppressions = str(suppressions_beside(out))
    n = export_csv(
        env.engine(),
        out or _Echo(),  # type: ignore[arg-type]
        list_name=list_name,
        suppressions_out=suppressions,
    )
    if out:
        click.echo(f"exported {n} row(s) to {out}")
    if suppressions:
        click.echo(f"suppressions written to {suppressions}", err=not out)
    else:
        click.echo(
            "suppressions not written: give --out FILE or --suppressions FILE to keep them",
            err=True,
        )


@subscribers.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def subscribers_forget(env: Any, email: str, yes: bool) -> None:
    """Erase EMAIL and their data; a hashed suppression stops any re-import."""
    if not yes:
        click.confirm(f"erase {email} and all their data for good?", abort=True)
    found = forget(env.engine(), email)
    click.echo("erased; the address is suppressed" if found else "not found; address suppressed")


@subscribers.command("count")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def subscribers_count(env: Any, as_json: bool) -> None:
    """Count memberships per list and status."""
    rows = count(env.engine())
    if as_json:
        data: dict[str, dict[str, int]] = {}
        for name, status, n in rows:
            data.setdefault(name, {})[status] = n
        _json(data)
        return
    by_list: dict[str, dict[str, int]] = {}
    for name, status, n in rows:
        by_list.setdefault(name, {})[status] = n
    _table(
        "Subscribers per list",
        ["list", "pending", "confirmed", "unsubscribed"],
        [[k, v["pending"], v["confirmed"], v["unsubscribed"]] for k, v in by_list.items()],
    )


# --------------------------------------------------------------------------- db


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(env: Any) -> None:
    """Apply every pending migration (also done automatically on first use)."""
    heads = upgrade(env.settings.database.url)
    click.echo(f"database at revision {', '.join(heads)}")


@db.command("copy")
@click.option(
    "--to",
    "to_url",
    required=True,
    envvar="BRIEF_COPY_TO",
    help="Target database URL (or BRIEF_COPY_TO); for a password use PGPASSWORD, not the URL.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Rows per target transaction (an interruption loses at most one batch).",
)
@click.pass_obj
def db_copy(env: Any, to_url: str, batch_size: int) -> None:
    """Copy the whole store to the (empty) database at --to, then compare counts.

    Resumable: after an interruption, run the same command again.
    """

    def progress(table: str, done: int, total: int) -> None:
        click.echo(f"  {table}: {done}/{total}")

    report = copy_store(env.settings.database.url, to_url, batch_size=batch_size, progress=progress)
    click.echo(
        ("resumed: " if report.resumed else "")
        + f"copied {report.copied} row(s) in this run; rows per table (source = target):"
    )
    for c in report.counts:
        mark = "" if c.equal else f"   MISMATCH: target has {c.target}"
        click.echo(f"  {c.table:<24} {c.source:>9}{mark}")
    if report.mismatched:
        names = ", ".join(c.table for c in report.mismatched)
        raise StoreError(
            f"db copy: counts differ in {names} (was the source written to during the copy?)"
        )
    click.echo("every table has the same number of rows on both sides")
