"""``brief send`` and ``brief status``: thin shells over pipeline.send and the ledger."""

from __future__ import annotations

from functools import partial

import click

from pipeline.cli.main import Env, print_json
from pipeline.content.assemble import mark_sent
from pipeline.errors import BriefError, NotFound, SendError, SendStopped
from pipeline.providers import load_provider
from pipeline.providers.base import KeepsFiles
from pipeline.send import check_sendable, plan, render, send_campaign, send_test, stop_on_signals
from pipeline.send import dry_run as plan_json
from pipeline.store import ledger


@click.command()
@click.argument("issue_ref", metavar="ISSUE")
@click.option("--list", "list_name", metavar="NAME", help="The list (default: newsletter's).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Send even though the issue is not approved.")
@click.option(
    "--retry-unknown",
    is_flag=True,
    help="Re-send deliveries a crash left unknown (the provider may have them: risks a "
    "second copy).",
)
@click.option(
    "--write-off-unknown",
    is_flag=True,
    help="Record deliveries a crash left unknown as not sent, and never send them.",
)
@click.option(
    "--include-new",
    is_flag=True,
    help="On a resume, also send to people confirmed since the send first started.",
)
@click.option(
    "--join",
    is_flag=True,
    help="Help a send that is running elsewhere (PostgreSQL): take its rows through the "
    "same claims instead of being refused.",
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
    write_off_unknown: bool,
    include_new: bool,
    join: bool,
    dry_run: bool,
    to_address: str | None,
    as_json: bool,
) -> None:
    """Send ISSUE (number or path) to a list; resumes where an earlier run stopped.

    The audience is written down when the send first starts; a resume mails only
    those rows (--include-new adds people confirmed since). SIGTERM or Ctrl-C stops
    cleanly: what the provider holds is finished and recorded, and the exit code is
    75 (run again to resume); a second signal stops at once. While deliveries are
    unknown (a crash while the provider held them) the exit code is 1 until
    --retry-unknown or --write-off-unknown decides them.
    """
    if retry_unknown and write_off_unknown:
        raise click.UsageError("--retry-unknown and --write-off-unknown exclude each other")
    settings = env.settings
    library = env.library()
    issue = library.issue(issue_ref)
    list_name = list_name or settings.newsletter.default_list
    if to_address:
        result = send_test(settings, library, issue, to_address)
        if as_json:
            print_json(
                {
                    "to": to_address,
                    "ok": result.ok,
                    "provider_id": result.provider_id,
                    "reason": result.label,
                }
            )
        if not result.ok:
            raise SendError(f"test copy to {to_address} failed: {result.label}")
        if not as_json:
            click.echo(
                f"sent a [TEST] copy of issue {issue.label} to {to_address} "
                f"through {settings.provider.name} ({result.provider_id})"
            )
        return
    engine = env.engine()
    rendered = render(issue, library, settings)
    planned = plan(engine, settings, issue, list_name, rendered=rendered, include_new=include_new)
    if dry_run:
        if as_json:
            print_json(
                plan_json(
                    engine,
                    settings,
                    library,
                    issue,
                    list_name,
                    rendered=rendered,
                    include_new=include_new,
                )
            )
            return
        click.echo(
            f"dry run: issue {issue.label} \u201c{planned.subject}\u201d to "
            f"{planned.recipients} recipient(s) on list {list_name!r} through "
            f"{settings.provider.name}; one message is {planned.message_bytes:,} bytes"
        )
        click.echo(planned.line())
        for address in planned.first:
            click.echo(f"  {address}")
        return
    check_sendable(issue, force)
    if not yes and not join:
        click.confirm(
            f"Send issue {issue.label} \u201c{rendered.subject}\u201d to {planned.recipients} "
            f"recipient(s) on list {list_name!r} through {settings.provider.name} "
            f"({planned.line()})?",
            abort=True,
        )
    report = _run_with_progress(
        env,
        library,
        issue,
        list_name,
        rendered,
        quiet=as_json,
        force=force,
        retry_unknown=retry_unknown,
        write_off_unknown=write_off_unknown,
        include_new=include_new,
        join=join,
    )
    if report.state == "sent":
        mark_sent(issue)
        from pipeline.render.site import rebuild_after_send
        from pipeline.send.edits import edits_after_sending

        edits = partial(edits_after_sending, env.engine(), settings=settings)
        built = rebuild_after_send(env.library, settings, edits)
        if built is not None and not as_json:
            click.echo(
                f"rebuilt the web archive: {len(built)} files in "
                f"{settings.site.target(settings.root)}"
            )
    if as_json:
        print_json(_report_json(report))
    else:
        _print_report(report, settings, issue)
    _raise_unless_done(report, issue)


def _raise_unless_done(report, issue) -> None:
    """The exit code says whether the send is finished: 0 sent, 75 stopped (resume by
    running again), 1 paused or unknown deliveries waiting for a decision."""
    if report.stopped:
        raise SendStopped(
            f"send stopped with {report.pending} left and nothing in doubt; run "
            f"'brief send {issue.number}' again to resume"
        )
    if report.paused:
        raise SendError(f"send paused: {report.reason}")
    if report.state == "unresolved":
        raise SendError(
            f"send of issue {issue.label} is not finished: {report.unknown} deliveries are "
            "unknown (the provider may have them); resend them with --retry-unknown or record "
            "them not sent with --write-off-unknown"
        )


def _run_with_progress(env, library, issue, list_name, rendered, quiet, **options):
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    stop = threading.Event()
    console = _stderr_console()

    def on_stop(name: str) -> None:
        console.print(
            f"{name}: finishing what the provider holds, then stopping "
            "(a second signal stops at once)"
        )

    columns = (
        TextColumn("issue " + issue.label),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} sent · {task.fields[failed]} failed · "
            "{task.fields[rate]:.0f}/s{task.fields[waiting]}"
        ),
        TimeRemainingColumn(),
    )
    with stop_on_signals(stop, on_stop):
        with Progress(*columns, transient=True, disable=quiet, console=console) as bar:
            task = bar.add_task("send", total=None, failed=0, rate=0.0, waiting="")

            def progress(p):
                waiting = ""
                if p.retrying:
                    waiting = f" · {p.retrying} waiting to retry"
                    if p.next_retry_in is not None:
                        waiting += f" (next in {p.next_retry_in:.0f}s)"
                bar.update(
                    task,
                    total=p.total,
                    completed=p.sent,
                    failed=p.failed,
                    rate=p.rate,
                    waiting=waiting,
                )

            return send_campaign(
                env.engine(),
                env.settings,
                library,
                issue,
                list_name,
                stop=stop,
                progress=progress,
                rendered=rendered,
                **options,
            )


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _report_json(report) -> dict:
    return {
        "issue": report.issue_number,
        "list": report.list_name,
        "provider": report.provider,
        "state": str(report.state),
        "reason": report.reason,
        "total": report.total,
        "sent": report.sent,
        "failed": report.failed,
        "unknown": report.unknown,
        "pending": report.pending,
        "sent_now": report.sent_now,
        "seconds": round(report.elapsed, 3),
        "rate": round(report.rate, 1),
        "joined_since": report.joined_since,
        "written_off": report.written_off,
        "failures": [_failure_json(f) for f in report.failures],
    }


def _failure_json(f) -> dict:
    return {
        "code": f.code,
        "reason": f.reason,
        "state": str(f.state),
        "permanent": f.permanent,
        "count": f.count,
    }


def _failure_line(f) -> str:
    kind = "unknown" if f.state == "unknown" else "permanent" if f.permanent else "failed"
    return f"  {f.count} \u00d7 {f.label} ({kind})"


def _kept_folder(settings, provider_name: str, issue_number: int):
    """Where the sent messages are when the provider keeps them as files (the outbox);
    asked of the provider built through the registry, like any other."""
    try:
        provider = load_provider(settings, provider_name)
    except BriefError:  # not buildable here (uninstalled, no secrets): it keeps no files here
        return None
    return provider.folder(issue_number) if isinstance(provider, KeepsFiles) else None


def _print_report(report, settings, issue) -> None:
    click.echo(
        f"issue {issue.label} to list {report.list_name!r} through {report.provider}: "
        f"{report.sent} sent ({report.sent_now} now, {report.rate:.0f}/s), "
        f"{report.failed} failed, {report.unknown} unknown, {report.pending} pending "
        f"of {report.total}"
    )
    if report.found_inflight:
        click.echo(
            f"{report.found_inflight} deliveries were with the provider when an earlier run "
            "stopped: marked unknown"
        )
    if report.state == "sending":
        click.echo(
            "other senders still hold rows of this send; the last one to finish records "
            "its end (brief status shows it)"
        )
    if report.written_off:
        click.echo(f"{report.written_off} unknown deliveries written off (recorded not sent)")
    if report.joined_since:
        click.echo(
            f"{report.joined_since} joined since (not included; --include-new sends to them)"
        )
    for f in report.failures:
        click.echo(_failure_line(f))
    folder = _kept_folder(settings, report.provider, report.issue_number)
    if folder is not None:
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
    out: list[dict] = []
    groups = []
    for c in found:
        counts = ledger.state_counts(engine, c.id)
        groups.append(ledger.failures(engine, c.id))
        first, last = ledger.timing(engine, c.id)
        # From the campaign's start to its last sent message: a small send has a rate too.
        span = (last - first).total_seconds() if first and last else 0.0
        span = max(span, 0.001) if counts["sent"] else 0.0
        rate = counts["sent"] / span if span > 0 else None
        out.append(
            {
                "issue": number,
                "list": c.list_name,
                "provider": c.provider,
                "state": str(c.state),
                "pause_kind": str(c.pause_kind) if c.pause_kind else None,
                "reason": c.pause_reason,
                "subject": c.subject,
                "commit": c.content_commit,
                "counts": counts,
                "total": sum(counts.values()),
                "rate": round(rate, 1) if rate else None,
                "started": c.started_at,
                "finished": c.finished_at,
                "failures": [_failure_json(f) for f in groups[-1]],
                "failed": [
                    {"subscriber_id": s, "email": e, "state": st, "reason": why}
                    for s, e, st, why in ledger.failed_addresses(engine, c.id)
                ],
            }
        )
    if as_json:
        print_json(out)
        return
    for row, failures in zip(out, groups, strict=True):
        counts = row["counts"]
        click.echo(
            f"issue {number:03d} to list {row['list']!r} through {row['provider']}: "
            f"{row['state']}" + (f" ({row['reason']})" if row["reason"] else "")
        )
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {row['total']}")
        if row["rate"]:
            click.echo(f"  rate achieved: {row['rate']:.1f} messages/s")
        for f in failures:
            click.echo(_failure_line(f))
        for f in row["failed"][:20]:
            click.echo(f"    {f['email'] or '#' + str(f['subscriber_id'])} ({f['state']})")
