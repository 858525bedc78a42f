"""The From domain's published mail records, judged: SPF, DKIM, DMARC and MX.

Each check is a plain function of a ``Lookup`` and the facts it needs, giving one
``Check`` (ok, warn or fail, the reason, and the fix). SPF is followed through
``include:`` and ``redirect=`` as a receiver would (at most 10 lookups, RFC 7208 §4.6.4),
far enough to say whether the relay or the provider is allowed; it is not a full SPF
evaluator (macros and ``exists:`` are reported, not expanded).
"""

from __future__ import annotations

import base64
import enum
import ipaddress
from dataclasses import dataclass, field

from pipeline.doctor.dns import DnsUnavailable, Lookup


class Status(enum.Enum):
    """How one check came out."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One line of ``brief doctor``: what was checked, how it came out, why, and the fix."""

    name: str
    status: Status
    reason: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.name,
            "status": self.status.value,
            "reason": self.reason,
            "fix": self.fix,
        }


# Where each HTTP provider's SPF include lives (their setup guides); SES and Resend send
# from Amazon SES's servers.
PROVIDER_SPF = {
    "postmark": "include:spf.mtasv.net",
    "sendgrid": "include:sendgrid.net",
    "mailgun": "include:mailgun.org",
    "ses": "include:amazonses.com",
    "resend": "include:amazonses.com",
}

_SPF_LOOKUP_LIMIT = 10


def organisational(domain: str) -> str:
    """The registrable part of ``domain``, approximated as its last two labels (three
    under a two-letter country code's second level such as ``co.uk``): enough for
    relaxed alignment of a newsletter's own subdomains, without a public suffix list."""
    labels = domain.lower().rstrip(".").split(".")
    if (
        len(labels) >= 3
        and len(labels[-1]) == 2
        and labels[-2] in {"co", "com", "org", "net", "ac", "gov"}
    ):
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(a: str, b: str, mode: str) -> bool:
    """DMARC identifier alignment (RFC 7489 §3.1): strict is equal, relaxed the same
    organisational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if mode == "s" else organisational(a) == organisational(b)


def _spf_records(lookup: Lookup, domain: str) -> list[str]:
    return [t for t in lookup.txt(domain) if t.lower().split(" ", 1)[0] == "v=spf1"]


@dataclass
class _SpfWalk:
    """What an SPF record allows, gathered through its includes."""

    lookups: int = 0
    includes: set[str] = field(default_factory=set)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    all_qualifier: str = ""


def _walk(lookup: Lookup, domain: str, walk: _SpfWalk, top: bool) -> None:
    records = _spf_records(lookup, domain)
    if not records:
        walk.problems.append(f"{domain} (named by include or redirect) has no SPF record")
        return
    if len(records) > 1:
        walk.problems.append(f"{domain} has {len(records)} SPF records (receivers fail all)")
    for term in records[0].split()[1:]:
        term_l = term.lower()
        qualifier = term_l[0] if term_l[0] in "+-~?" else "+"
        mech = term_l.lstrip("+-~?")
        if mech.startswith(("include:", "redirect=")):
            target = mech.split(":", 1)[1] if mech.startswith("include:") else mech.split("=", 1)[1]
            walk.includes.add(target)
            walk.lookups += 1
            if walk.lookups > _SPF_LOOKUP_LIMIT:
                walk.problems.append("more than 10 DNS lookups (RFC 7208 permerror)")
                return
            if qualifier == "+" and "%" not in target:
                _walk(lookup, target, walk, False)
        elif mech.startswith(("ip4:", "ip6:")) and qualifier == "+":
            try:
                walk.networks.append(ipaddress.ip_network(mech[4:], strict=False))
            except ValueError:
                walk.problems.append(f"{term} is not an address or network")
        elif (
            mech in ("a", "mx") or mech.startswith(("a:", "mx:", "a/", "mx/"))
        ) and qualifier == "+":
            walk.lookups += 1
            name = mech.split(":", 1)[1].split("/")[0] if ":" in mech else domain
            hosts = [name] if mech.startswith("a") else [h for _, h in lookup.mx(name)]
            for host in hosts:
                for address in lookup.addresses(host):
                    walk.networks.append(ipaddress.ip_network(address))
        elif mech == "all" and top:
            walk.all_qualifier = qualifier


def _within(
    ip: ipaddress.IPv4Network | ipaddress.IPv6Network,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    """``ip`` lies inside ``net`` (never across IPv4 and IPv6)."""
    return ip.version == net.version and ip.subnet_of(net)  # type: ignore[arg-type]


def _expectations(expect: tuple[str, ...], relay_ips: list[str]) -> list[str]:
    return list(expect) or [f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in relay_ips]


def check_spf(lookup: Lookup, domain: str, expect: tuple[str, ...], relay: str = "") -> Check:
    """The From domain's SPF exists, is one record, ends in a failing ``all``, and allows
    each of ``expect`` (an include or an address); with no ``expect``, the ``relay``
    host's addresses."""
    name = "spf"
    try:
        records = _spf_records(lookup, domain)
        if not records:
            wanted = " ".join(expect) or "include:<your relay's or provider's SPF>"
            return Check(
                name,
                Status.FAIL,
                f"{domain} publishes no SPF record",
                f'publish TXT at {domain}: "v=spf1 {wanted} ~all"',
            )
        if len(records) > 1:
            return Check(
                name,
                Status.FAIL,
                f"{domain} publishes {len(records)} SPF records; receivers treat that as an error",
                "merge them into one v=spf1 record",
            )
        relay_ips: list[str] = []
        if not expect and relay:
            try:
                relay_ips = [str(ipaddress.ip_address(relay))]
            except ValueError:
                relay_ips = lookup.addresses(relay)
        if not expect and relay_ips and all(ipaddress.ip_address(i).is_loopback for i in relay_ips):
            return Check(
                name,
                Status.WARN,
                f"{domain}: {records[0]!r}; the relay {relay} is on this machine, so its "
                "public address cannot be known from here",
                'name what SPF must allow in [doctor] spf_expect, e.g. ["ip4:203.0.113.7"]',
            )
        walk = _SpfWalk()
        _walk(lookup, domain, walk, True)
    except DnsUnavailable as exc:
        return Check(
            name, Status.FAIL, f"could not ask DNS: {exc}", "check [doctor] resolver or the network"
        )
    missing = []
    for want in _expectations(expect, relay_ips):
        kind, _, value = want.partition(":")
        if kind == "include":
            if value.lower() not in walk.includes:
                missing.append(want)
        else:
            ip = ipaddress.ip_network(value, strict=False)
            if not any(_within(ip, n) for n in walk.networks):
                missing.append(want)
    if walk.problems:
        return Check(
            name,
            Status.FAIL,
            f"{domain}: {'; '.join(walk.problems)}",
            "fix the SPF record so every include resolves, within 10 lookups",
        )
    if missing:
        return Check(
            name,
            Status.FAIL,
            f"{domain}: {records[0]!r} does not allow {', '.join(missing)}",
            f"add {' '.join(missing)} before the all mechanism",
        )
    if walk.all_qualifier == "+":
        return Check(
            name,
            Status.FAIL,
            f"{domain}: {records[0]!r} ends in +all: anyone may send as you",
            "end the record with ~all or -all",
        )
    if not walk.all_qualifier:
        return Check(
            name,
            Status.WARN,
            f"{domain}: {records[0]!r} has no all mechanism",
            "end the record with ~all or -all",
        )
    allowed = (
        ", ".join(_expectations(expect, relay_ips)) or "(nothing expected: set [doctor] spf_expect)"
    )
    status = Status.OK if (expect or relay_ips) else Status.WARN
    return Check(
        name,
        status,
        f"{domain}: {records[0]!r} allows {allowed}",
        "" if status is Status.OK else 'set [doctor] spf_expect = ["include:…"]',
    )


def parse_tags(record: str) -> dict[str, str]:
    """``k=v; k=v`` (DKIM key and DMARC records) as a dict, keys lower-cased."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def check_dkim(lookup: Lookup, selector: str, domain: str, public_der_b64: str) -> Check:
    """``<selector>._domainkey.<domain>`` publishes the public half of the configured key."""
    name = "dkim"
    where = f"{selector}._domainkey.{domain}"
    expected = f"v=DKIM1; k=rsa; p={public_der_b64}"
    try:
        records = [t for t in lookup.txt(where) if "p=" in t]
    except DnsUnavailable as exc:
        return Check(
            name, Status.FAIL, f"could not ask DNS: {exc}", "check [doctor] resolver or the network"
        )
    if not records:
        return Check(
            name,
            Status.FAIL,
            f"no DKIM key published at {where}",
            f'publish TXT at {where}: "{expected}" (brief doctor --records prints it)',
        )
    tags = parse_tags(records[0])
    if tags.get("k", "rsa") != "rsa":
        return Check(
            name,
            Status.FAIL,
            f"{where} holds a {tags['k']} key; the configured key is RSA",
            f'publish "{expected}"',
        )
    if not tags.get("p"):
        return Check(
            name,
            Status.FAIL,
            f"{where} has an empty p=: the key is revoked",
            f'publish "{expected}"',
        )
    try:
        published = base64.b64decode(tags["p"], validate=True)
    except ValueError:
        published = b""
    if published != base64.b64decode(public_der_b64):
        return Check(
            name,
            Status.FAIL,
            f"the key at {where} is not the public half of provider.smtp.dkim.key_file",
            f'publish "{expected}", or point key_file at the key you published',
        )
    return Check(name, Status.OK, f"{where} publishes the configured key")


def check_dmarc(lookup: Lookup, domain: str, dkim_domain: str, spf_domain: str) -> Check:
    """A DMARC policy for the From domain (or its organisational domain), and the DKIM
    ``d=`` and the envelope sender's domain aligned with it as the policy asks.
    ``dkim_domain`` or ``spf_domain`` "" is not judged (the provider's own)."""
    name = "dmarc"
    try:
        where = f"_dmarc.{domain}"
        records = [t for t in lookup.txt(where) if t.lower().startswith("v=dmarc1")]
        if not records and organisational(domain) != domain:
            where = f"_dmarc.{organisational(domain)}"
            records = [t for t in lookup.txt(where) if t.lower().startswith("v=dmarc1")]
    except DnsUnavailable as exc:
        return Check(
            name, Status.FAIL, f"could not ask DNS: {exc}", "check [doctor] resolver or the network"
        )
    if not records:
        return Check(
            name,
            Status.FAIL,
            f"no DMARC record at _dmarc.{domain}",
            f'publish TXT at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}" '
            "(Gmail and Yahoo require one of bulk senders)",
        )
    tags = parse_tags(records[0])
    policy = tags.get("p", "")
    if policy not in ("none", "quarantine", "reject"):
        return Check(
            name,
            Status.FAIL,
            f"{where}: {records[0]!r} has no valid p= policy",
            "set p=none, p=quarantine or p=reject",
        )
    adkim, aspf = tags.get("adkim", "r"), tags.get("aspf", "r")
    words = {"r": "relaxed", "s": "strict"}
    wrong = []
    if dkim_domain and not aligned(dkim_domain, domain, adkim):
        wrong.append(
            f"DKIM d={dkim_domain} is not aligned with From {domain} "
            f"(adkim={adkim}, {words.get(adkim, adkim)})"
        )
    if spf_domain and not aligned(spf_domain, domain, aspf):
        wrong.append(
            f"the envelope sender's domain {spf_domain} is not aligned with From {domain} "
            f"(aspf={aspf}, {words.get(aspf, aspf)})"
        )
    if dkim_domain and spf_domain and len(wrong) == 2:
        return Check(
            name,
            Status.FAIL,
            "; ".join(wrong),
            f"sign with provider.smtp.dkim.domain = {domain!r}, or relax the policy to adkim=r",
        )
    if dkim_domain and wrong and wrong[0].startswith("DKIM"):
        return Check(
            name,
            Status.FAIL,
            wrong[0],
            f"sign with provider.smtp.dkim.domain = {domain!r} (or a parent domain with adkim=r)",
        )
    if wrong:
        return Check(
            name,
            Status.WARN,
            wrong[0] + "; DKIM alone can pass DMARC",
            "send from a return path under the From domain, or set aspf=r",
        )
    # p=none is what Gmail and Yahoo ask of bulk senders at least: monitoring is enough.
    judged = "aligned" if dkim_domain or spf_domain else "alignment is the provider's to show"
    return Check(name, Status.OK, f"{where}: p={policy}, adkim={adkim}, aspf={aspf}; {judged}")


def check_mx(lookup: Lookup, domain: str) -> Check:
    """The From domain receives mail (replies, and receivers that check the sender)."""
    name = "mx"
    try:
        found = lookup.mx(domain)
    except DnsUnavailable as exc:
        return Check(
            name, Status.FAIL, f"could not ask DNS: {exc}", "check [doctor] resolver or the network"
        )
    if not found or found == [(0, "")]:
        return Check(
            name,
            Status.FAIL,
            f"{domain} has no MX record: replies and bounces to the From address are lost, "
            "and some receivers refuse such senders",
            f"publish an MX record for {domain} pointing at a mail server that accepts mail",
        )
    return Check(name, Status.OK, f"{domain} MX " + ", ".join(f"{p} {h}" for p, h in found))
