"""A real DNS server on loopback UDP (dnslib) answering from a zone the test writes.

``zone[(name, type)]`` is a list of values: TXT strings, "10 mx.example.com" for MX,
addresses for A/AAAA. A name with no record of the asked type but others answers
NOERROR with nothing; an unknown name answers NXDOMAIN, as a real server does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.servers import free_port


@dataclass
class Zone:
    """The records the stub serves; change them while it runs."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    port: int = 0
    asked: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, rtype: str, *values: str) -> None:
        with self.lock:
            self.records.setdefault((name.lower().rstrip("."), rtype), []).extend(values)

    def remove(self, name: str, rtype: str) -> None:
        with self.lock:
            self.records.pop((name.lower().rstrip("."), rtype), None)

    @property
    def resolver(self) -> str:
        """The value of ``[doctor] resolver`` that aims at this server."""
        return f"127.0.0.1:{self.port}"


def _txt_chunks(value: str) -> list[str]:
    # One TXT string holds at most 255 octets: a 2048-bit key is split, as a zone file does.
    return [value[i : i + 255] for i in range(0, len(value), 255)] or [""]


class _Resolver:
    def __init__(self, zone: Zone):
        self.zone = zone

    def resolve(self, request, handler):
        from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A

        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self.zone.lock:
            self.zone.asked.append((qname, qtype))
            values = list(self.zone.records.get((qname, qtype), []))
            known = any(name == qname for name, _ in self.zone.records)
        for value in values:
            if qtype == "TXT":
                rdata = TXT(_txt_chunks(value))
            elif qtype == "MX":
                pref, host = value.split()
                rdata = MX(host, int(pref))
            elif qtype == "A":
                rdata = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            else:
                continue
            reply.add_answer(RR(request.q.qname, QTYPE.reverse[qtype], rdata=rdata, ttl=60))
        if not values and not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextmanager
def dns_server() -> Iterator[Zone]:
    """A dnslib server on a free loopback UDP port serving a fresh ``Zone``."""
    from dnslib.server import DNSLogger, DNSServer

    zone = Zone(port=free_port())
    server = DNSServer(
        _Resolver(zone),
        port=zone.port,
        address="127.0.0.1",
        logger=DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False),
    )
    server.start_thread()
    try:
        yield zone
    finally:
        server.stop()
