"""Which clicks and opens a machine made: every rule in this one module, each with the
reason it writes into ``clicks.reasons``.

Security scanners (Microsoft Defender Safe Links, Mimecast, Barracuda, Proofpoint) fetch
every link of a message within seconds of delivery, and Apple Mail Privacy Protection
fetches every pixel; counted as people they inflate every figure. A click is machine when
any rule matches; the reasons say which:

- ``head``: a HEAD request (link checkers, scanners; a browser never follows a link so);
- ``prefetch``: a prefetch or preview request (``Purpose``, ``Sec-Purpose``, ``X-Purpose``
  or ``X-Moz`` saying prefetch/preview);
- ``early``: within ``EARLY`` of the delivery's ``sent_at`` (nobody reads that fast);
- ``scanner-ua``: a user agent of a known scanner (``SCANNER_AGENTS``), ``no-ua`` none;
- ``scanner-network``: from a known scanner network (``SCANNER_NETWORKS``);
- ``burst``: one person's clicks on every link of the message within ``BURST`` (classed
  when recorded; clicks of the burst recorded earlier are re-classed then);
- ``apple-mpp`` (opens): Apple's proxy network or its bare user agent.

Networks are only ever kept truncated (IPv4 /24, IPv6 /48): enough for these rules, not
enough to find a person.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

EARLY = timedelta(seconds=30)
BURST = timedelta(seconds=2)

# Lower-case substrings of the user agents scanners announce themselves with.
SCANNER_AGENTS: tuple[str, ...] = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "bingpreview",
    "microsoft office",  # Office's link preview/Protected View fetch
    "ms-office",
    "skypeuripreview",
    "symantec",
    "trendmicro",
    "sophos",
    "fortiguard",
    "cisco",
    "ironport",
    "zscaler",
    "headlesschrome",
    "phantomjs",
    "scanner",
)

# Published outbound ranges of the large mail-security gateways (as documented by the
# vendors at the time of writing; revise when they change). Matched on the truncated
# network, so a range smaller than /24 is never listed.
SCANNER_NETWORKS: tuple[str, ...] = (
    "205.139.110.0/24",  # Mimecast (US)
    "207.211.30.0/24",  # Mimecast (US)
    "207.211.31.0/24",  # Mimecast (US)
    "91.220.42.0/24",  # Mimecast (UK)
    "148.163.128.0/19",  # Proofpoint (pphosted)
    "67.231.144.0/20",  # Proofpoint (pphosted)
    "64.235.144.0/20",  # Barracuda
    "209.222.80.0/21",  # Barracuda
    "40.92.0.0/15",  # Microsoft Exchange Online Protection
    "40.107.0.0/16",  # Microsoft Exchange Online Protection
    "52.100.0.0/14",  # Microsoft Exchange Online Protection
    "104.47.0.0/17",  # Microsoft Exchange Online Protection
)

# Apple's own network: Mail Privacy Protection fetches images through it.
APPLE_NETWORKS: tuple[str, ...] = ("17.0.0.0/8",)
# MPP's proxy sends this bare user agent and nothing more.
APPLE_MPP_AGENT = "mozilla/5.0"

_PREFETCH_HEADERS = ("purpose", "sec-purpose", "x-purpose", "x-moz")


def truncate(address: str | None) -> str | None:
    """The network of an address, IPv4 /24 or IPv6 /48; None when it is no IP address."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _within(network: str | None, ranges: Sequence[str]) -> bool:
    if not network:
        return False
    try:
        net = ipaddress.ip_network(network)
    except ValueError:
        return False
    for r in ranges:
        known = ipaddress.ip_network(r)
        if net.version == known.version and net.subnet_of(known):  # type: ignore[arg-type]
            return True
    return False


def classify(
    *,
    kind: str,
    method: str,
    headers: Mapping[str, str],
    user_agent: str,
    network: str | None,
    at: datetime,
    sent_at: datetime | None,
) -> tuple[str, ...]:
    """The reasons one click or open is a machine's (empty: a person's, so far)."""
    reasons: list[str] = []
    if method.upper() == "HEAD":
        reasons.append("head")
    if any(
        "prefetch" in headers.get(h, "").lower() or "preview" in headers.get(h, "").lower()
        for h in _PREFETCH_HEADERS
    ):
        reasons.append("prefetch")
    if sent_at is not None and at - sent_at < EARLY:
        reasons.append("early")
    agent = user_agent.strip().lower()
    if kind == "open" and (_within(network, APPLE_NETWORKS) or agent == APPLE_MPP_AGENT):
        reasons.append("apple-mpp")
    if not agent:
        reasons.append("no-ua")
    elif any(s in agent for s in SCANNER_AGENTS):
        reasons.append("scanner-ua")
    if _within(network, SCANNER_NETWORKS):
        reasons.append("scanner-network")
    return tuple(reasons)


def burst(
    clicks: Sequence[tuple[int, int, datetime]], link_count: int, window: timedelta = BURST
) -> set[int]:
    """The ids of one person's clicks (id, link id, at) that hit every one of the
    message's ``link_count`` links within ``window``; empty when none did. A message with
    a single link has no burst (one click is not evidence)."""
    if link_count < 2 or len(clicks) < link_count:
        return set()
    ordered = sorted(clicks, key=lambda c: c[2])
    found: set[int] = set()
    start = 0
    for end in range(len(ordered)):
        while ordered[end][2] - ordered[start][2] > window:
            start += 1
        span = ordered[start : end + 1]
        if len({c[1] for c in span}) >= link_count:
            found.update(c[0] for c in span)
    return found


def join_reasons(*groups: Sequence[str] | str) -> str:
    """Reasons as stored: comma-separated, each once, in order."""
    seen: list[str] = []
    for group in groups:
        items = group.split(",") if isinstance(group, str) else group
        for r in items:
            if r and r not in seen:
                seen.append(r)
    return ",".join(seen)
