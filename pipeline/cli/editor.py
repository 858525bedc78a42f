"""``brief approve`` and ``brief new``: the editor's desk, thin shells over
``pipeline.render.lint.check_issue`` and ``pipeline.content.scaffold``."""

from __future__ import annotations

import click

from pipeline.cli.main import Env, parse_when
from pipeline.errors import SendError


@click.command()
@click.argument("issue_ref", metavar="ISSUE")
@click.pass_obj
def approve(env: Env, issue_ref: str) -> None:
    """Check ISSUE as `brief check` does and, when it has no errors, mark it approved.

    The slot (or a special issue's own time) then sends it. Nothing is changed when the
    check finds an error: each is printed as path:line.
    """
    from pipeline.content.assemble import mark_status
    from pipeline.render.lint import check_issue

    issue, _, warnings = check_issue(env.settings, issue_ref)
    if issue.status == "sent":
        raise SendError(f"issue {issue.label} was sent already; nothing to approve")
    for w in warnings:
        click.echo(w, err=True)
    rel = issue.path.relative_to(env.settings.root)
    if issue.status == "approved":
        click.echo(f"unchanged: {rel} is approved already")
        return
    mark_status(issue.path, "approved")
    when = (
        f"at {issue.date} {issue.send_time or env.settings.schedule.send_time:%H:%M}"
        if issue.special
        else f"at its slot {issue.date}"
    )
    click.echo(f"approved: {rel} (issue {issue.label} goes out {when})")


@click.group()
def new() -> None:
    """Start a glossary entry, a museum story or a special issue, ready to fill in."""


@new.command("entry")
@click.argument("term")
@click.pass_obj
def new_entry_cmd(env: Env, term: str) -> None:
    """Write glossary/<slug>.md for TERM with every field and section of the format."""
    from pipeline.content.scaffold import new_entry

    path = new_entry(env.settings.root, term)
    click.echo(
        f"wrote {path.relative_to(env.settings.root)}: fill in each 'TODO:', then add "
        "'queued: DATE' so the queue takes it (brief check lists what is left)"
    )


@new.command("story")
@click.argument("title")
@click.pass_obj
def new_story_cmd(env: Env, title: str) -> None:
    """Write museum/<slug>.md for TITLE with every field and section of the format."""
    from pipeline.content.scaffold import new_story

    path = new_story(env.settings.root, title, env.now().date())
    click.echo(
        f"wrote {path.relative_to(env.settings.root)}: fill in each 'TODO:' (real names, "
        "real numbers, sources), then add 'queued: DATE'"
    )


@new.command("special")
@click.argument("subject")
@click.option(
    "--at",
    "at",
    required=True,
    metavar="DATETIME",
    help="When it goes out, in the newsletter's zone, e.g. '2026-12-09 10:00'.",
)
@click.pass_obj
def new_special_cmd(env: Env, subject: str, at: str) -> None:
    """Write the next-numbered special issue (kind: special) going out at --at."""
    from pipeline.content.scaffold import new_special

    when = parse_when(at, env.settings.schedule.timezone)
    if when <= env.now():
        raise click.BadParameter(f"{at!r} has passed; give a future time", param_hint="--at")
    path = new_special(env.library(), env.settings, subject, when)
    click.echo(
        f"wrote {path.relative_to(env.settings.root)}: a special issue for "
        f"{when:%Y-%m-%d %H:%M %Z}; write it, then brief approve {path.name[:3]}"
    )
