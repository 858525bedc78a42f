"""``brief doctor``: is this newsletter set up so that its mail is delivered?

Each check gives ok, warn or fail with the reason and the fix: the From domain's SPF,
DKIM, DMARC and MX records (``doctor.records``, through ``doctor.dns``), the one-click
unsubscribe at ``base_url``, the provider's credentials, and the next issue's size,
lint and SpamAssassin score. Nothing here sends mail or changes the store.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from urllib.parse import urlsplit

from pipeline.config import Settings
from pipeline.doctor.dns import Lookup
from pipeline.doctor.records import (
    PROVIDER_SPF,
    Check,
    Status,
    check_dkim,
    check_dmarc,
    check_mx,
    check_spf,
)
from pipeline.errors import BriefError

__all__ = [
    "Check",
    "Lookup",
    "Status",
    "credentials_check",
    "dns_checks",
    "dns_records",
    "issue_checks",
    "one_click_check",
    "run_checks",
]

# A token no link ever carries: the app answers it with its bad-link page.
PROBE_TOKEN = "brief-doctor-probe"
# The text of the public app's bad-link page (web/public/context.py ``not_found``): how
# the probe knows Brief answered, not a proxy's or another site's 404.
BAD_LINK_TEXT = "This link is not valid"
GMAIL_CLIP_BYTES = 102 * 1024


def _signer(settings: Settings):
    """The smtp provider's DKIM signer, None without one; ConfigError for a bad table."""
    if settings.provider.name != "smtp":
        return None
    from pipeline.providers import provider_setup
    from pipeline.providers.dkim import load_signer

    setup = provider_setup(settings)
    return load_signer(
        "provider.smtp.dkim", setup.table.get("dkim", {}), setup.root, setup.from_address
    )


def _envelope_domain(settings: Settings) -> str:
    """The envelope sender's domain for the smtp provider (its return path when one is
    configured, else the From address); "" for providers that choose their own."""
    if settings.provider.name != "smtp":
        return ""
    table = settings.provider.table("smtp")
    return_path = str(table.get("return_path", "") or settings.newsletter.from_address)
    return return_path.rpartition("@")[2].lower()


def dns_checks(settings: Settings, lookup: Lookup) -> list[Check]:
    """SPF, DKIM, DMARC and MX of the From domain."""
    domain = settings.newsletter.domain
    name = settings.provider.name
    expect = settings.doctor.spf_expect
    if not expect and name in PROVIDER_SPF:
        expect = (PROVIDER_SPF[name],)
    relay = str(settings.provider.table("smtp").get("host", "127.0.0.1")) if name == "smtp" else ""
    checks = []
    if name == "outbox":
        checks.append(
            Check(
                "spf",
                Status.WARN,
                "the outbox provider sends nothing: SPF not judged",
                "choose a provider in [provider] name",
            )
        )
    else:
        checks.append(check_spf(lookup, domain, expect, relay))
    signer = _signer(settings)
    dkim_domain = ""
    if signer is not None:
        checks.append(
            _key_private(
                check_dkim(lookup, signer.selector, signer.domain, _p(signer)), signer.key_path
            )
        )
        dkim_domain = signer.domain
    elif name == "smtp":
        checks.append(
            Check(
                "dkim",
                Status.WARN,
                f"Brief does not sign: fine only if your relay signs with a key under {domain}",
                "set [provider.smtp.dkim] selector and key_file (README: Running your own mail)",
            )
        )
    elif name == "outbox":
        checks.append(
            Check("dkim", Status.WARN, "the outbox provider sends nothing: DKIM not judged", "")
        )
    else:
        checks.append(
            Check("dkim", Status.OK, f"signed by {name}: verify {domain} in its dashboard")
        )
    checks.append(check_dmarc(lookup, domain, dkim_domain, _envelope_domain(settings)))
    checks.append(check_mx(lookup, domain))
    return checks


def _key_private(check: Check, path) -> Check:
    """A published key whose private half others on the machine can read is a warning:
    anyone who reads it can sign as the newsletter."""
    if check.status is Status.OK and path.stat().st_mode & 0o077:
        return Check(
            check.name,
            Status.WARN,
            f"{check.reason}, but {path} is readable by other users",
            f"chmod 600 {path}",
        )
    return check


def _p(signer) -> str:
    return signer.public_record().rpartition("p=")[2]


def one_click_check(settings: Settings, *, verify: str | bool = True, timeout: float = 10) -> Check:
    """POST the one-click body to ``base_url``/unsubscribe/<a token no link carries>: the
    public app must answer it with its bad-link page, over HTTPS, without a redirect."""
    import requests

    name = "one-click"
    base = settings.newsletter.base_url.rstrip("/")
    parts = urlsplit(base)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not loopback:
        return Check(
            name,
            Status.FAIL,
            f"newsletter.base_url is {base}: Gmail and Yahoo send the one-click "
            "unsubscribe only to https URLs",
            "serve brief behind a TLS proxy and set base_url to its https:// URL",
        )
    url = f"{base}/unsubscribe/{PROBE_TOKEN}"
    try:
        response = requests.post(
            url,
            data={"List-Unsubscribe": "One-Click"},
            timeout=timeout,
            allow_redirects=False,
            verify=verify,
        )
    except requests.exceptions.SSLError as exc:
        return Check(
            name,
            Status.FAIL,
            f"{base}: the TLS certificate is not trusted ({exc})",
            "install a certificate for the host (e.g. Let's Encrypt) on the proxy",
        )
    except requests.RequestException as exc:
        return Check(
            name,
            Status.FAIL,
            f"{base}: no answer ({type(exc).__name__})",
            "start `brief serve` and point the proxy for base_url at it",
        )
    status = response.status_code
    if 300 <= status < 400:
        return Check(
            name,
            Status.FAIL,
            f"POST {url} is redirected ({status} to {response.headers.get('location')}); "
            "mail providers do not follow a one-click redirect",
            "set base_url to the final URL (scheme, host and path) the proxy serves",
        )
    if status >= 500:
        return Check(
            name,
            Status.FAIL,
            f"POST {url} answered {status}",
            "look at the log of `brief serve` and the proxy",
        )
    if status == 404 and BAD_LINK_TEXT in response.text:
        if parts.scheme != "https":
            return Check(
                name,
                Status.WARN,
                f"{base} answers the one-click POST, over http on loopback",
                "fine for trying brief doctor locally; receivers need https",
            )
        return Check(name, Status.OK, f"POST {url} gives Brief's bad-link answer over HTTPS")
    return Check(
        name,
        Status.FAIL,
        f"POST {url} answered {status} without Brief's bad-link page: something else "
        "serves base_url",
        "route base_url (all paths, POST included) to `brief serve`",
    )


def credentials_check(settings: Settings) -> Check:
    """The provider's credentials, proved by a no-op call where it has one."""
    from pipeline.providers import load_provider
    from pipeline.providers.base import ChecksCredentials

    name = "credentials"
    try:
        provider = load_provider(settings)
    except BriefError as exc:
        return Check(
            name, Status.FAIL, str(exc), "see README: Settings (secrets come from the environment)"
        )
    try:
        if not isinstance(provider, ChecksCredentials):
            return Check(
                name,
                Status.WARN if settings.provider.name != "outbox" else Status.OK,
                f"{settings.provider.name}: no no-op call to check credentials with",
                "",
            )
        try:
            what = provider.check_credentials()
        except BriefError as exc:
            return Check(
                name,
                Status.FAIL,
                str(exc),
                f"check the settings and secrets of provider.{settings.provider.name}",
            )
        return Check(name, Status.OK, f"{settings.provider.name}: {what}")
    finally:
        provider.close()


def issue_checks(settings: Settings, spamassassin: str | None = None) -> list[Check]:
    """The next unsent issue: rendered size (Gmail clips over 102 KB), lint, and the
    SpamAssassin score of a reader's copy when ``spamassassin`` is installed."""
    from pipeline.content.library import load_content
    from pipeline.render.issue import render_issue
    from pipeline.render.lint import lint_rendered
    from pipeline.send.message import sample_message

    try:
        library = load_content(settings)
    except BriefError as exc:
        return [
            Check(
                "issue",
                Status.FAIL,
                f"content does not load: {str(exc).splitlines()[0]}",
                "run brief check and fix what it lists",
            )
        ]
    issue = library.next_unsent()
    if issue is None:
        return [Check("issue", Status.WARN, "no unsent issue to check", "run brief assemble")]
    try:
        rendered = render_issue(issue, library, settings)
    except BriefError as exc:
        return [
            Check(
                "size",
                Status.FAIL,
                f"issue {issue.label} does not render: {exc}",
                "run brief render and fix the template or content it names",
            )
        ]
    size = len(rendered.html.encode("utf-8"))
    out = [
        Check(
            "size",
            Status.FAIL if size > GMAIL_CLIP_BYTES else Status.OK,
            f"issue {issue.label}: HTML {size / 1024:.1f} KB (Gmail clips over 102 KB)",
            "shorten the issue or its template" if size > GMAIL_CLIP_BYTES else "",
        )
    ]
    findings = lint_rendered(rendered, issue, library, settings)
    errors = [str(f) for f in findings if f.level == "error"]
    warnings = [str(f) for f in findings if f.level != "error"]
    if errors:
        out.append(
            Check(
                "lint",
                Status.FAIL,
                f"issue {issue.label}: {'; '.join(errors)}",
                "fix what brief check lists",
            )
        )
    elif warnings:
        out.append(
            Check(
                "lint",
                Status.WARN,
                f"issue {issue.label}: {'; '.join(warnings)}",
                "see brief check",
            )
        )
    else:
        out.append(Check("lint", Status.OK, f"issue {issue.label}: no findings"))
    out.append(_spam_check(sample_message(rendered, settings), issue.label, spamassassin))
    return out


_SCORE = re.compile(
    rb"X-Spam-Status: (Yes|No), score=(-?[\d.]+) required=(-?[\d.]+)(.*?)\r?\n(?!\s)", re.S
)


def _spam_check(eml: bytes, label: str, spamassassin: str | None) -> Check:
    name = "spamassassin"
    path = spamassassin or shutil.which("spamassassin")
    if not path:
        return Check(
            name,
            Status.WARN,
            "spamassassin is not installed: score not checked",
            "apt install spamassassin",
        )
    try:
        # -L: local tests only (no network lookups), so the score is the content's own.
        done = subprocess.run(
            [path, "-L", "-t"], input=eml, capture_output=True, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(name, Status.WARN, f"spamassassin did not run: {exc}", "")
    found = _SCORE.search(done.stdout)
    if not found:
        return Check(name, Status.WARN, "spamassassin gave no score", "run spamassassin -t by hand")
    score, required = float(found.group(2)), float(found.group(3))
    tests = re.search(rb"tests=([^\s]+(?:\s+[^\s:]+)*)", found.group(4))
    named = " ".join(tests.group(1).decode("ascii", "replace").split()) if tests else ""
    if score >= required:
        return Check(
            name,
            Status.FAIL,
            f"issue {label}: score {score} (spam at {required}): {named}",
            "change what the named tests flag",
        )
    if score >= required / 2:
        return Check(
            name,
            Status.WARN,
            f"issue {label}: score {score} of {required}: {named}",
            "look at the named tests",
        )
    return Check(name, Status.OK, f"issue {label}: score {score} of {required}")


def run_checks(
    settings: Settings,
    *,
    lookup: Lookup | None = None,
    verify: str | bool = True,
    spamassassin: str | None = None,
    progress: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check, in the order ``brief doctor`` prints them."""
    lookup = lookup or Lookup.from_settings(settings.doctor)
    checks: list[Check] = []

    def add(found: list[Check]) -> None:
        for check in found:
            checks.append(check)
            if progress is not None:
                progress(check)

    add(dns_checks(settings, lookup))
    add([one_click_check(settings, verify=verify)])
    add([credentials_check(settings)])
    add(issue_checks(settings, spamassassin))
    return checks


def dns_records(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, type, value) of the records to publish for this setup (``--records``)."""
    domain = settings.newsletter.domain
    name = settings.provider.name
    expect = settings.doctor.spf_expect or (
        (PROVIDER_SPF[name],) if name in PROVIDER_SPF else ("ip4:<your relay's public address>",)
    )
    out = [(domain, "TXT", f"v=spf1 {' '.join(expect)} ~all")]
    signer = _signer(settings)
    if signer is not None:
        out.append((signer.record_name, "TXT", signer.public_record()))
    out.append((f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}"))
    return out
