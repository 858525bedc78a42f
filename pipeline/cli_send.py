"""``brief send`` and ``brief status``: thin shells over pipeline.send and the ledger."""

from __future__ import annotations

import click

from .cli import Env, print_json


@click.command()
@click.argument("issue_ref", metavar="ISSUE")
@click.option("--list", "list_name", metavar="NAME", help="The list (default: newsletter's).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Send even though the issue is not approved.")
@click.option(
    "--retry-unknown",
    is_flag=True,
    help="Re-send deliveries left in flight by a crash (risks a second copy).",
)
@click.option("--dry-run", is_flag=True, help="Show the count, first recipients and size only.")
@click.option(
    "--to",
    "to_address",
    metavar="ADDRESS",
    help="Send one [TEST] copy to ADDRESS, outside the ledger.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def send(
    env: Env,
    issue_ref: str,
    list_name: str | None,
    yes: bool,
    force: bool,
    retry_unknown: bool,
    dry_run: bool,
    to_address: str | None,
    as_json: bool,
) -> None:
    """Send ISSUE (number or path) to a list; resumes where an earlier run stopped."""
    from .errors import SendError
    from .send import check_sendable, render

    settings = env.settings
    library = env.library()
    issue = library.issue(issue_ref)
    list_name = list_name or settings.newsletter.default_list
    if to_address:
        from .send import send_test

        result = send_test(settings, library, issue, to_address)
        if as_json:
            print_json(
                {
                    "to": to_address,
                    "ok": result.ok,
                    "provider_id": result.provider_id,
                    "reason": result.reason,
                }
            )
        if not result.ok:
            raise SendError(f"test copy to {to_address} failed: {result.reason}")
        if not as_json:
            click.echo(
                f"sent a [TEST] copy of issue {issue.label} to {to_address} "
                f"through {settings.provider.name} ({result.provider_id})"
            )
        return
    engine = env.engine()
    rendered = render(issue, library, settings)
    if dry_run:
        from .send import dry_run as plan

        info = plan(engine, settings, library, issue, list_name, rendered=rendered)
        if as_json:
            print_json(info)
            return
        click.echo(
            f"dry run: issue {issue.label} \u201c{info['subject']}\u201d to "
            f"{info['recipients']} recipient(s) on list {list_name!r} through "
            f"{settings.provider.name}; one message is {info['message_bytes']:,} bytes"
        )
        for address in info["first"]:
            click.echo(f"  {address}")
        return
    check_sendable(issue, force)
    from .store import audience_count

    count = audience_count(engine, list_name)
    if not yes:
        click.confirm(
            f"Send issue {issue.label} \u201c{rendered.subject}\u201d to {count} "
            f"recipient(s) on list {list_name!r} through {settings.provider.name}?",
            abort=True,
        )
    report = _run_with_progress(
        env, library, issue, list_name, force, retry_unknown, rendered, quiet=as_json
    )
    if as_json:
        print_json(_report_json(report))
    else:
        _print_report(report, settings, issue)
    if report.paused:
        raise SendError(f"send paused: {report.reason}")


def _run_with_progress(env, library, issue, list_name, force, retry_unknown, rendered, quiet):
    import signal
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .send import send_campaign

    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):  # first Ctrl-C: finish the batch in flight, then pause
        stop.set()
        signal.signal(signal.SIGINT, previous)

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_interrupt)
    columns = (
        TextColumn("issue " + issue.label),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} sent · {task.fields[failed]} failed · "
            "{task.fields[rate]:.0f}/s"
        ),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, transient=True, disable=quiet, console=_stderr_console()) as bar:
            task = bar.add_task("send", total=None, failed=0, rate=0.0)

            def progress(p):
                bar.update(task, total=p.total, completed=p.sent, failed=p.failed, rate=p.rate)

            return send_campaign(
                env.engine(),
                env.settings,
                library,
                issue,
                list_name,
                force=force,
                retry_unknown=retry_unknown,
                stop=stop,
                progress=progress,
                rendered=rendered,
            )
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _report_json(report) -> dict:
    return {
        "issue": report.issue_number,
        "list": report.list_name,
        "provider": report.provider,
        "state": report.state,
        "reason": report.reason,
        "total": report.total,
        "sent": report.sent,
        "failed": report.failed,
        "unknown": report.unknown,
        "pending": report.pending,
        "sent_now": report.sent_now,
        "seconds": round(report.elapsed, 3),
        "rate": round(report.rate, 1),
        "failures": [{"reason": r, "permanent": p, "count": n} for r, p, n in report.failures],
    }


def _print_report(report, settings, issue) -> None:
    click.echo(
        f"issue {issue.label} to list {report.list_name!r} through {report.provider}: "
        f"{report.sent} sent ({report.sent_now} now, {report.rate:.0f}/s), "
        f"{report.failed} failed, {report.unknown} unknown, {report.pending} pending "
        f"of {report.total}"
    )
    if report.found_inflight:
        click.echo(
            f"{report.found_inflight} deliveries were in flight when an earlier run "
            "stopped: marked unknown (re-send them with --retry-unknown)"
        )
    for reason, permanent, n in report.failures:
        click.echo(f"  {n} \u00d7 {'permanent' if permanent else 'failed'}: {reason}")
    if report.provider == "outbox":
        from .providers.outbox import OutboxProvider

        folder = OutboxProvider(settings).folder(report.issue_number)
        try:
            shown = folder.relative_to(settings.root)
        except ValueError:
            shown = folder
        click.echo(f"the messages are .eml files in {shown}/")


@click.command()
@click.argument("issue_ref", metavar="ISSUE")
@click.option("--list", "list_name", metavar="NAME", help="Only this list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(env: Env, issue_ref: str, list_name: str | None, as_json: bool) -> None:
    """Counts by state, the rate achieved and failures by reason for each send of ISSUE."""
    from .errors import NotFound
    from .store import ledger

    text = issue_ref.lstrip("0") or "0"
    number = int(text) if text.isdigit() else env.library().issue(issue_ref).number
    engine = env.engine()
    found = [
        c
        for c in ledger.campaigns_of(engine, number)
        if list_name is None or c.list_name == list_name
    ]
    if not found:
        raise NotFound(
            f"issue {number:03d} has not been sent"
            + (f" to list {list_name!r}" if list_name else "")
        )
    out = []
    for c in found:
        counts = ledger.state_counts(engine, c.id)
        first, last = ledger.timing(engine, c.id)
        span = (last - first).total_seconds() if first and last else 0.0
        rate = counts["sent"] / span if span > 0 else None
        out.append(
            {
                "issue": number,
                "list": c.list_name,
                "provider": c.provider,
                "state": c.state,
                "reason": c.pause_reason,
                "subject": c.subject,
                "commit": c.content_commit,
                "counts": counts,
                "total": sum(counts.values()),
                "rate": round(rate, 1) if rate else None,
                "started": c.started_at,
                "finished": c.finished_at,
                "failures": [
                    {"reason": r, "permanent": p, "count": n}
                    for r, p, n in ledger.failures(engine, c.id)
                ],
                "failed": [
                    {"subscriber_id": s, "email": e, "state": st, "reason": why}
                    for s, e, st, why in ledger.failed_addresses(engine, c.id)
                ],
            }
        )
    if as_json:
        print_json(out)
        return
    for c in out:
        counts = c["counts"]
        click.echo(
            f"issue {number:03d} to list {c['list']!r} through {c['provider']}: "
            f"{c['state']}" + (f" ({c['reason']})" if c["reason"] else "")
        )
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {c['total']}")
        if c["rate"]:
            click.echo(f"  rate achieved: {c['rate']:.1f} messages/s")
        for f in c["failures"]:
            kind = "permanent" if f["permanent"] else "failed"
            click.echo(f"  {f['count']} \u00d7 {kind}: {f['reason']}")
        for f in c["failed"][:20]:
            click.echo(f"    {f['email'] or '#' + str(f['subscriber_id'])} ({f['state']})")
