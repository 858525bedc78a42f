"""``brief bounces``: read the bounce mailbox (``fetch``) or a mailbox file (``import``)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.main import Env, print_json


@click.group()
def bounces() -> None:
    """Bounces, complaints and mailto unsubscribes that arrive as email ([bounces])."""


def _report(tally, as_json: bool) -> None:
    if as_json:
        print_json(tally.__dict__)
    else:
        click.echo(tally.line())


@bounces.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="Print the tally as JSON.")
@click.pass_obj
def fetch(env: Env, as_json: bool) -> None:
    """Read new messages in the [bounces] IMAP folder, apply them, move them away."""
    from pipeline.bounces.process import fetch_mailbox

    _report(fetch_mailbox(env.engine(), env.settings), as_json)


@bounces.command("import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the tally as JSON.")
@click.pass_obj
def import_cmd(env: Env, path: Path, as_json: bool) -> None:
    """Apply the bounces, complaints and unsubscribes in an mbox file (left as it is)."""
    from pipeline.bounces.process import import_mbox

    _report(import_mbox(env.engine(), env.settings, path), as_json)
