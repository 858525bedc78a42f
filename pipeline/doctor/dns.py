"""DNS lookups for ``brief doctor`` (and for verifying DKIM signatures), via dnspython.

One ``Lookup`` per run, aimed at ``[doctor] resolver`` (a chosen server and port) or at
the system's resolvers. An answer that does not exist (NXDOMAIN, no record of that type)
is an empty list, which the checks judge; a server that does not answer is a
``DnsUnavailable``, so a check can say "could not ask" instead of "not published".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config import DoctorSettings


class DnsUnavailable(Exception):
    """The resolver did not answer (timeout, refused, SERVFAIL)."""


@dataclass(frozen=True)
class Lookup:
    """Asks one resolver (``server`` and ``port``), or the system's when ``server`` is ""."""

    server: str = ""
    port: int = 53
    timeout: float = 5.0
    _resolver: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, doctor: DoctorSettings) -> Lookup:
        """The lookup ``[doctor]`` describes."""
        return cls(doctor.resolver, doctor.resolver_port, doctor.timeout)

    def resolver(self) -> Any:
        """A dnspython resolver aimed where this lookup asks (built once per Lookup)."""
        if self._resolver is None:
            import dns.resolver

            res = dns.resolver.Resolver(configure=not self.server)
            if self.server:
                res.nameservers = [self.server]
                res.port = self.port
            res.lifetime = self.timeout
            res.timeout = self.timeout
            object.__setattr__(self, "_resolver", res)
        return self._resolver

    def _answer(self, name: str, rdtype: str) -> list[Any]:
        import dns.exception
        import dns.resolver

        try:
            return list(self.resolver().resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"no DNS server answered for {name} {rdtype}: {exc}") from None
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            raise DnsUnavailable(f"DNS timed out asking for {name} {rdtype}") from None
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(f"DNS failed for {name} {rdtype}: {exc}") from None

    def txt(self, name: str) -> list[str]:
        """Each TXT record at ``name``, its strings joined (RFC 7208 §3.3)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._answer(name, "TXT")]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, host) of each MX record at ``name``, lowest preference first."""
        found = [(r.preference, str(r.exchange).rstrip(".")) for r in self._answer(name, "MX")]
        return sorted(found)

    def addresses(self, name: str) -> list[str]:
        """The IPv4 and IPv6 addresses of ``name``."""
        return [r.address for t in ("A", "AAAA") for r in self._answer(name, t)]

    def dkim_txt(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the TXT record at ``name`` (the key), None when absent,
        so ``dkim.verify(message, dnsfunc=lookup.dkim_txt)`` asks this resolver."""
        found = self.txt(name.decode("ascii").rstrip("."))
        return found[0].encode("utf-8") if found else None
