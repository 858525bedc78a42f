"""``brief doctor``: the deliverability checks, one line each; exit 1 on any failure."""

from __future__ import annotations

import json

import click

from pipeline.cli.main import Env
from pipeline.errors import BriefError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON array.")
@click.option("--records", is_flag=True, help="Print the DNS records to publish, check nothing.")
@click.pass_obj
def doctor(env: Env, as_json: bool, records: bool) -> None:
    """Check SPF, DKIM, DMARC, MX, the one-click unsubscribe, the provider's credentials
    and the next issue (size, lint, SpamAssassin): ok, warn or fail with the fix."""
    from pipeline.doctor import Check, Status, dns_records, run_checks

    settings = env.settings
    if records:
        rows = dns_records(settings)
        if as_json:
            click.echo(json.dumps([{"name": n, "type": t, "value": v} for n, t, v in rows]))
        else:
            for name, rtype, value in rows:
                # Zone-file form: a TXT string holds at most 255 octets (a 2048-bit key's
                # record is split in two; its readers join them).
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
                click.echo(f"{name}. IN {rtype} " + " ".join(f'"{c}"' for c in chunks))
        return

    def line(check: Check) -> None:
        fix = f" (fix: {check.fix})" if check.fix and check.status is not Status.OK else ""
        click.echo(f"{check.status.value:<4} {check.name:<12} {check.reason}{fix}")

    checks = run_checks(settings, progress=None if as_json else line)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    failed = [c for c in checks if c.status is Status.FAIL]
    if failed:
        # One line on stderr and exit 1, through the CLI's one error edge.
        raise BriefError(f"{len(failed)} of {len(checks)} checks failed")
