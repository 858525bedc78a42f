"""``brief tracking``: what click tracking keeps (``rollup``: old clicks into counts)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pipeline.cli.main import Env, print_json


@click.group()
def tracking() -> None:
    """Clicks and opens ([tracking]): retention."""


@tracking.command("rollup")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def rollup_cmd(env: Env, as_json: bool) -> None:
    """Roll clicks older than [tracking] keep_days up into per-link counts (`brief run`
    does this daily)."""
    from pipeline.store.clicks import rollup

    keep = env.settings.tracking.keep_days
    done = rollup(env.engine(), keep, datetime.now(UTC))
    if as_json:
        print_json({"rolled": done.rolled, "counts": done.counts, "keep_days": keep})
    else:
        click.echo(
            f"rolled up {done.rolled} click(s) older than {keep} days into {done.counts} count(s)"
        )
