"""The ``brief`` command: a thin shell that parses, calls plain functions, prints.

Subcommands live in the small modules beside this one and are imported only when run,
so ``brief --help`` stays fast. Every ``BriefError`` is caught here, once,
and printed as one line (a line per problem for content) with its exit code.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from pipeline.errors import BriefError

# name -> (module:attribute, one-line help). The help is here so that
# listing the commands does not import them.
LAZY: dict[str, tuple[str, str]] = {
    "check": ("pipeline.cli.main:check", "Validate settings and all content (and lint issues)."),
    "approve": ("pipeline.cli.editor:approve", "Check an issue and mark it approved."),
    "new": ("pipeline.cli.editor:new", "Start a glossary entry, museum story or special issue."),
    "schedule": ("pipeline.cli.main:schedule", "Print the next send slots."),
    "queue": ("pipeline.cli.main:queue_cmd", "Show the queue, the forecast and the runway."),
    "assemble": ("pipeline.cli.main:assemble_cmd", "Write the next issue file from the queue."),
    "render": ("pipeline.cli.render:render", "Render an issue to HTML, text and .eml."),
    "preview": ("pipeline.cli.render:preview", "Preview issues in the browser, live."),
    "lists": ("pipeline.cli.store:lists", "Create, list and delete subscriber lists."),
    "subscribers": ("pipeline.cli.store:subscribers", "Manage subscribers and consent."),
    "db": ("pipeline.cli.store:db", "Database maintenance (migrations)."),
    "send": ("pipeline.cli.send:send", "Send an issue to a list (or a test copy)."),
    "status": ("pipeline.cli.send:status", "Show a send's progress and failures."),
    "run": ("pipeline.cli.run:run", "Run the every-other-Wednesday daemon."),
    "serve": ("pipeline.cli.web:serve", "Serve the public pages and webhooks."),
    "site": ("pipeline.cli.web:site", "Build the static web archive."),
    "demo": ("pipeline.cli.demo:demo", "Run the whole main job on embedded defaults."),
    "bounces": ("pipeline.cli.bounces:bounces", "Read the bounce mailbox (or an mbox file)."),
    "tracking": ("pipeline.cli.tracking:tracking", "Roll old clicks up into per-link counts."),
    "doctor": ("pipeline.cli.doctor:doctor", "Check DNS, one-click, credentials and the issue."),
    "report": ("pipeline.cli.report:report", "How an issue did (or every sent issue)."),
    "growth": ("pipeline.cli.report:growth", "Subscriber growth per day, week or month."),
    "dashboard": ("pipeline.cli.report:dashboard", "Serve the report dashboard on loopback."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        here = Path(__file__).parent
        return sorted(
            n
            for n, (target, _) in LAZY.items()
            if (here / f"{target.split(':')[0].rsplit('.', 1)[1]}.py").exists()
        )

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in LAZY or name not in self.list_commands(ctx):
            return None
        module, attr = LAZY[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, LAZY[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class Env:
    """What every command needs, loaded on first use: settings, content, database."""

    def __init__(self, config: str | None):
        self.config = config

    @cached_property
    def settings(self):
        from pipeline.config import load_settings

        return load_settings(self.config)

    def library(self):
        """All content, validated against the calendar."""
        from pipeline.content.library import load_content

        return load_content(self.settings)

    @cached_property
    def _engine(self):
        from pipeline.store import open_store

        return open_store(self.settings.database.url)

    def engine(self):
        """The store, migrated to head, opened once per command."""
        return self._engine

    def now(self) -> datetime:
        """Now, aware. BRIEF_NOW (ISO-8601) rehearses another moment."""
        forced = os.environ.get("BRIEF_NOW")
        if forced:
            return parse_when(forced, self.settings.schedule.timezone)
        return datetime.now(UTC)


def parse_when(text: str, tz) -> datetime:
    """An ISO date or datetime; naive values are in the newsletter's zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 date or datetime") from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def console():
    from rich.console import Console

    return Console(highlight=False)


def print_table(table: Any, out: Any = None) -> None:
    """Print a rich table without cutting a cell short where nobody can widen the window.

    In a terminal the table fits its width (columns marked ``overflow="fold"``, like
    addresses, fold onto more lines and lose nothing); piped or redirected, it is printed
    at its natural width, each row one line, so no address ends in "…" for grep or a file.
    """
    from rich.measure import Measurement

    out = out or console()
    if not out.is_terminal:
        wide = out.options.update(width=1_000_000, max_width=1_000_000)
        out.width = max(Measurement.get(out, wide, table).maximum, 1)
    out.print(table)


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 issue``, ``2 issues``: a count with its noun agreeing (``many`` when not +s)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    envvar="BRIEF_CONFIG",
    help="brief.toml to use (default: found from the current folder upward).",
)
@click.version_option(package_name="brief-pipeline")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Brief: Markdown in git becomes a newsletter every other Wednesday."""
    ctx.obj = Env(config)


@click.command()
@click.option(
    "--links",
    "links",
    is_flag=True,
    help="Also fetch every external link of unsent issues and the museum's sources.",
)
@click.option(
    "--link-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 120),
    metavar="SECONDS",
    help="How long to wait for each link.",
)
@click.pass_obj
def check(env: Env, links: bool, link_timeout: float) -> None:
    """Validate settings and all content; exit 1 on content errors, 2 on settings."""
    from pipeline.content.library import drafts
    from pipeline.errors import ContentError
    from pipeline.providers import provider_factory, provider_setup

    settings = env.settings
    # The provider is registered and importable and its table is valid (its defaults filled
    # in), or exit 2 naming the key; nothing is built, so no secret is needed here.
    setup = provider_setup(settings)
    # A provider may also check the files its table names (optional ``check_setup``).
    check_setup = getattr(provider_factory(settings), "check_setup", None)
    if check_setup is not None:
        check_setup(setup)
    from pipeline.render.lint import lint_library

    library = env.library()
    errors: list = []
    try:
        warnings = drafts(library) + lint_library(library, settings)
    except ContentError as exc:
        # Links are still checked: the editor gets every problem in one run.
        errors += exc.problems
        warnings = drafts(library)
    if any(i.status == "sent" for i in library.issues):
        from pipeline.errors import StoreError
        from pipeline.send.edits import edit_warnings, edits_after_sending

        try:
            warnings += edit_warnings(edits_after_sending(env.engine(), library, settings), library)
        except StoreError as exc:  # the content check stands without the database
            warnings.append(f"warning: sent issues not compared with what was sent: {exc}")
    if links:
        from pipeline.errors import Problem
        from pipeline.render.links import check_library_links

        report = check_library_links(library, settings.state_dir, env.now(), timeout=link_timeout)
        errors += [
            Problem(link.path, link.line, f"broken link {link.url}: {result.reason}")
            for link, result in report.broken
        ]
        click.echo(
            f"links: {report.checked} fetched, {report.from_cache} from the cache "
            f"(.brief/linkcheck.json), {len(report.broken)} broken",
            err=True,
        )
    if errors:
        for w in warnings:
            click.echo(w, err=True)
        raise ContentError(errors)
    if settings.provider.name == "ses" and not settings.web.webhook_table("ses").get("topics"):
        warnings.append(
            "webhooks.ses.topics: empty, so /webhooks/ses trusts no SNS topic and SES bounces "
            "and complaints are never applied; list your topic ARNs"
        )
    for w in warnings:
        click.echo(w, err=True)
    click.echo(
        f"ok: {plural(len(library.glossary), 'glossary entry', 'glossary entries')}, "
        f"{plural(len(library.museum), 'museum story', 'museum stories')}, "
        f"{plural(len(library.issues), 'issue')} ({settings.path})"
    )


@click.command()
@click.option(
    "--next",
    "count",
    default=6,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many slots.",
)
@click.option("--after", metavar="DATETIME", help="Start after this moment (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def schedule(env: Env, count: int, after: str | None, as_json: bool) -> None:
    """Print the next send slots, one ISO-8601 datetime with UTC offset a line."""
    from pipeline.content.calendar import slots

    sched = env.settings.schedule
    start = parse_when(after, sched.timezone) if after else env.now()
    found = [s.isoformat() for s in slots(sched, start, count)]
    if as_json:
        print_json(found)
    else:
        click.echo("\n".join(found))


@click.command("queue")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def queue_cmd(env: Env, as_json: bool) -> None:
    """Show the waiting items, which slot each would fill, and the runway."""
    from pipeline.content.assemble import RUNWAY_WARNING, forecast

    fc = forecast(env.library(), env.settings, env.now())
    if as_json:
        print_json(
            {
                "runway": fc.runway,
                "short": fc.short,
                "glossary": [e.slug for e in fc.queue.glossary],
                "museum": [s.slug for s in fc.queue.museum],
                "forecast": [
                    {
                        "slot": f.at.isoformat(),
                        "glossary": f.glossary.slug if f.glossary else None,
                        "museum": f.museum.slug if f.museum else None,
                    }
                    for f in fc.slots
                ],
            }
        )
    else:
        from rich.table import Table

        table = Table(title="Queue forecast")
        table.add_column("slot")
        table.add_column("glossary")
        table.add_column("museum")
        for f in fc.slots:
            table.add_row(
                f.at.strftime("%Y-%m-%d %H:%M %Z"),
                f.glossary.term if f.glossary else "[red]—[/]",
                f.museum.title if f.museum else "[red]—[/]",
            )
        out = console()
        print_table(table, out)
        out.print(
            f"runway: {fc.runway} issue(s) "
            f"({len(fc.queue.glossary)} glossary, {len(fc.queue.museum)} museum queued)"
        )
    if fc.short:
        click.echo(
            f"warning: the queue covers {fc.runway} issue(s), fewer than "
            f"{RUNWAY_WARNING}: queue more glossary entries and museum stories",
            err=True,
        )


@click.command("assemble")
@click.option("--for", "for_date", metavar="DATE", help="The slot date (default: next slot).")
@click.pass_obj
def assemble_cmd(env: Env, for_date: str | None) -> None:
    """Write the next issue file (status draft) from the queue; idempotent per slot."""
    from pipeline.content.assemble import assemble

    day = None
    if for_date:
        try:
            day = date.fromisoformat(for_date)
        except ValueError:
            raise click.BadParameter(
                f"{for_date!r} is not a date like 2026-12-16", param_hint="--for"
            ) from None
    result = assemble(env.library(), env.settings, env.now(), day)
    rel = result.issue.path.relative_to(env.settings.root)
    if result.created:
        click.echo(
            f"wrote {rel}: issue {result.issue.number} for {result.issue.date}, "
            f"glossary {', '.join(result.issue.glossary)}, "
            f"museum {', '.join(result.issue.museum)} (status draft)"
        )
    else:
        click.echo(f"unchanged: {rel} already claims the slot {result.issue.date}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning BriefErrors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="brief", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BriefError as exc:
        click.echo(f"error: {exc}" if "\n" not in str(exc) else str(exc), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # the edge: never a traceback for the operator
        if os.environ.get("BRIEF_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (set BRIEF_DEBUG=1 for the traceback)",
            err=True,
        )
        return 70
    return 0


def run() -> None:
    sys.exit(main())
