"""``brief demo``: the whole main job on embedded defaults, in a scratch copy."""

from __future__ import annotations

import os

import click

from pipeline.cli.main import Env
from pipeline.demo import run_demo


@click.command()
@click.option(
    "--readers",
    default=25,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="How many example.com readers the demo list gets.",
)
@click.pass_obj
def demo(env: Env, readers: int) -> None:
    """Assemble a new issue, render, send it to demo readers, build the web archive.

    In .brief/demo/, a fresh copy of the newsletter each time (your issues/ folder and
    database are untouched): assembles a new issue from the queue for the first free
    slot, renders it to .brief/demo/.brief/render/ (HTML, text, .eml), sends it through
    the outbox provider to --readers example.com subscribers (one .eml each in
    .brief/demo/.brief/outbox/NNN/), and builds the static web archive that now
    publishes it (.brief/demo/site/).
    """
    result = run_demo(env.settings, env.now(), dict(os.environ), readers, say=click.echo)
    click.echo("")
    click.echo(f"open {result.files[0]} in a browser to read issue {result.issue.label};")
    click.echo(f"each reader's message is an .eml file in {result.outbox}/")
    click.echo(f"the web archive: {result.site}/index.html")
    click.echo("preview while you write: brief preview")
