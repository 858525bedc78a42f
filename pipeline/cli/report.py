"""`brief report`, `brief growth` and `brief dashboard`: thin shells over pipeline/report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from pipeline.cli.main import Env, print_json, print_table


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


@click.command()
@click.argument("issue", required=False, type=click.IntRange(1, 999_999))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--html",
    "html_out",
    default=None,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the issue's report page and charts into DIR, to share.",
)
@click.pass_obj
def report(env: Env, issue: int | None, as_json: bool, html_out: Path | None) -> None:
    """How an issue did (or, without ISSUE, one row per sent issue)."""
    from rich.table import Table

    from pipeline.report.figures import all_reports, issue_report, sparkline

    engine = env.engine()
    if issue is None:
        if html_out is not None:
            raise click.UsageError("--html needs an ISSUE")
        reports = all_reports(engine)
        if as_json:
            print_json([r.as_json() for r in reports])
            return
        table = Table(title="Issues")
        for col in (
            "issue",
            "delivered",
            "failed",
            "hard",
            "soft",
            "complaints",
            "unsubscribed",
            "clickers",
            "click rate",
            "machine clicks",
        ):
            table.add_column(col)
        for r in reports:
            table.add_row(
                r.label,
                *(
                    str(v)
                    for v in (
                        r.delivered,
                        r.failed,
                        r.hard_bounces,
                        r.soft_bounces,
                        r.complaints,
                        r.unsubscribes,
                        r.human_clickers,
                    )
                ),
                _pct(r.click_rate),
                str(r.machine_clicks),
            )
        print_table(table)
        click.echo(f"click rate: {sparkline([r.click_rate for r in reports])}")
        return
    r = issue_report(engine, issue)
    if html_out is not None:
        from pipeline.report.page import write_issue_html

        written = write_issue_html(r, html_out.resolve())
        click.echo(f"wrote {len(written)} files to {html_out.resolve()}")
        return
    if as_json:
        print_json(r.as_json())
        return
    click.echo(f"issue {r.label}: {r.subject}")
    click.echo(f"  delivered {r.delivered}, failed {r.failed}, unknown {r.unknown}")
    click.echo(
        f"  hard bounces {r.hard_bounces} ({r.hard_bounces_at_send} at send), "
        f"soft bounces {r.soft_bounces}, complaints {r.complaints}, "
        f"unsubscribed {r.unsubscribes}"
    )
    click.echo(
        f"  people who clicked {r.human_clickers} ({_pct(r.click_rate)}), "
        f"human clicks {r.human_clicks}, machine clicks {r.machine_clicks}"
    )
    if r.opens is not None:
        click.echo(
            f"  opens {r.opens} (inflated by Apple Mail Privacy Protection), "
            f"machine opens {r.machine_opens}"
        )
    if r.links:
        table = Table(title="Links")
        for col in ("link", "url", "people", "human clicks", "machine clicks"):
            table.add_column(col, overflow="fold")
        for link in r.links:
            table.add_row(
                link.text,
                link.url,
                str(link.human_people),
                str(link.human),
                str(link.machine),
            )
        print_table(table)


@click.command()
@click.option("--since", default=None, metavar="DATE", help="Only periods from this date on.")
@click.option(
    "--by",
    "by",
    type=click.Choice(["day", "week", "month"]),
    default="month",
    show_default=True,
    help="How wide one row is.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def growth(env: Env, since: str | None, by: str, as_json: bool) -> None:
    """New confirmed, unsubscribed, lost (bounced/complained), net and total, per list."""
    from rich.table import Table

    from pipeline.report.growth import Period
    from pipeline.report.growth import growth as compute

    start = None
    if since is not None:
        try:
            start = date.fromisoformat(since)
        except ValueError:
            raise click.BadParameter(
                f"{since!r} is not a date (YYYY-MM-DD)", param_hint="--since"
            ) from None
    rows = compute(env.engine(), env.settings.schedule.timezone, Period(by), start)
    if as_json:
        print_json([r.as_json() for r in rows])
        return
    table = Table(title=f"Growth by {by}")
    for col in ("list", by, "confirmed", "unsubscribed", "bounced/complained", "net", "total"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.list_name,
            r.period.isoformat(),
            str(r.confirmed),
            str(r.unsubscribed),
            str(r.lost),
            f"{r.net:+d}",
            str(r.total),
        )
    print_table(table)


@click.command()
@click.option(
    "--port", default=8026, show_default=True, type=click.IntRange(0, 65535), help="TCP port."
)
@click.pass_obj
def dashboard(env: Env, port: int) -> None:
    """Serve the report dashboard on loopback (127.0.0.1): charts, issues, links."""
    import uvicorn

    from pipeline.web.dashboard import create_app

    app = create_app(env.settings, env.engine())
    # Loopback only, like the preview: the numbers are the operator's, and there is no
    # login; put it behind your own proxy if it must be seen elsewhere.
    click.echo(f"dashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)", err=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )
