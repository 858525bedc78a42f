"""DKIM signing (RFC 6376) for providers that hand over whole messages (``smtp``).

The operator's own relay often does not sign; Gmail's and Yahoo's bulk-sender rules
want a DKIM signature aligned with the From domain. ``[provider.smtp.dkim]`` names the
selector, the signing domain and the private key file; ``Signer.sign`` gives the
``DKIM-Signature`` header for one message's bytes, after substitution (each recipient's
body differs: the links carry their tokens) and before SMTP's dot-stuffing.

dkimpy does the canonicalization (relaxed/relaxed), header selection and folding, the
parts where signers and verifiers disagree in practice; the RSA step goes through
``cryptography`` (OpenSSL) with the key loaded once: dkimpy's own RSA is Python integer
arithmetic and re-parses the PEM on every call, 8 ms of CPU per message at 2048 bits
against well under 1 ms here (``benchmarks/bench_send.py --dkim``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from pipeline.errors import ConfigError
from pipeline.plugins import Key

# The headers Gmail's sender guidelines expect signed, in the order they are hashed;
# only those a message has go into h= (a transactional mail has no List-Unsubscribe).
SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)

# The keys of [provider.<name>.dkim]; an empty table (the default) signs nothing.
DKIM_SCHEMA = {
    "selector": Key(str, ""),  # the DNS label: <selector>._domainkey.<domain>
    "domain": Key(str, ""),  # d=; empty: the From address's domain
    "key_file": Key(str, ""),  # PEM private key (RSA), relative to brief.toml
}

# A selector may hold dots (``2026.brief``); each label is a DNS label.
_ONE_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LABEL = re.compile(rf"{_ONE_LABEL}(?:\.{_ONE_LABEL})*")
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_ONE_LABEL.replace('A-Za-z', 'a-z')}(?:\.{_ONE_LABEL})+")

_SPACE_RUN = re.compile(rb"  +")

# RFC 8301: verifiers must refuse RSA keys under 1024 bits.
MIN_BITS = 1024


def dkim_key() -> Key:
    """A plug-in's ``dkim`` key: a nested table checked against ``DKIM_SCHEMA``."""
    from pipeline.config import read_table

    def check(key: str, value: Any) -> Any:
        return read_table(key, DKIM_SCHEMA, value)

    return Key(dict, {}, check=check)


@dataclass(frozen=True)
class Signer:
    """Signs messages for one selector and domain with one private key."""

    selector: str
    domain: str
    key: rsa.RSAPrivateKey
    key_path: Path

    def sign(self, message: bytes) -> bytes:
        """The ``DKIM-Signature:`` header (folded, CRLF-terminated) for ``message``:
        CRLF lines, not dot-stuffed, exactly the bytes the receiver will see after
        the header is put in front of them."""
        from dkim import (  # dkimpy: imported on first use, not at import time
            RE_BTAG,
            HashThrough,
            fold,
            hash_headers,
        )
        from dkim.canonicalization import CanonicalizationPolicy

        policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        headers, body = split_message(message)
        present = {name.decode("ascii", "replace").lower() for name, _ in headers}
        signed = [h.lower().encode() for h in SIGNED_HEADERS if h.lower() in present]
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", b"relaxed/relaxed"),
            (b"d", self.domain.encode()),
            (b"s", self.selector.encode()),
            (b"h", b" : ".join(signed)),
            (b"bh", body_hash),
            # A placeholder as long as a signature's first line, so b= folds onto lines
            # of its own and the tags before it fold the same with the real one (as
            # dkimpy's signer does: relaxed canonicalization keeps where a fold falls).
            (b"b", b"0" * 60),
        ]
        name = b"DKIM-Signature"
        # The signature header itself is hashed last, with b= empty (RFC 6376 §3.7).
        unsigned = fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(name))
        unsigned = RE_BTAG.sub(b"\\1", unsigned)
        hasher = HashThrough(hashlib.sha256())
        hash_headers(
            hasher,
            policy,
            policy.canonicalize_headers(headers),
            signed,
            (name, b" " + unsigned),
            dict(fields),
        )
        signature = self.key.sign(hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signature))
        value = fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n", namelen=len(name))
        return name + b": " + value

    def public_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        return dns_record(self.key)

    @property
    def record_name(self) -> str:
        """Where the public key is published."""
        return f"{self.selector}._domainkey.{self.domain}"


def split_message(message: bytes) -> tuple[list, bytes]:
    """dkimpy's ``rfc822_parse`` (headers as [name, value] pairs, and the body), parsing
    only the header block when every line ends in CRLF: the same answer, without
    splitting a 40 KB body into lines and joining it again for every message."""
    from dkim import rfc822_parse

    end = message.find(b"\r\n\r\n")
    if end >= 0 and message.count(b"\n") == message.count(b"\r\n"):
        headers, _ = rfc822_parse(message[: end + 4])
        return headers, message[end + 4 :]
    return rfc822_parse(message)


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalization, exactly as dkimpy's.

    dkimpy's two regex passes over a 40 KB body match every single space (``[\\t ]+``
    becomes " " wherever a space is): most of the cost of signing. Without tabs (Brief's
    quoted-printable parts have none) only runs of two or more spaces change, and a
    pattern starting with a literal is searched at C speed; then the one space a run
    can leave before a CRLF goes. A body with a tab takes dkimpy's own path.
    """
    from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines

    if b"\t" in body:
        return Relaxed.canonicalize_body(body)
    body = _SPACE_RUN.sub(b" ", body).replace(b" \r\n", b"\r\n")
    return correct_empty_body(strip_trailing_lines(body))


def dns_record(key: rsa.RSAPrivateKey) -> str:
    """``v=DKIM1; k=rsa; p=…``: the public half of ``key`` as DKIM publishes it."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def load_signer(key: str, table: Any, root: Path, from_address: str) -> Signer | None:
    """The signer ``table`` (a checked ``[<key>]``) describes, or None when it names no
    key; a ConfigError naming the key at fault for a half-filled table, a missing file
    or a file that holds no RSA private key."""
    selector = str(table.get("selector", ""))
    key_file = str(table.get("key_file", ""))
    domain = str(table.get("domain", "")).strip().lower().rstrip(".")
    if not selector and not key_file and not domain:
        return None
    if not selector:
        raise ConfigError(f"{key}.selector: missing (the DNS label of the key, e.g. 'brief')")
    if not _LABEL.fullmatch(selector):
        raise ConfigError(f"{key}.selector: {selector!r} is not a DNS label (letters, digits, -)")
    if not key_file:
        raise ConfigError(f"{key}.key_file: missing (the PEM file of the private key)")
    domain = domain or from_address.rpartition("@")[2].lower()
    if not _DOMAIN.fullmatch(domain):
        raise ConfigError(f"{key}.domain: {domain!r} is not a domain name")
    path = Path(key_file).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"{key}.key_file: no such file {str(path)!r}")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        why = "it is encrypted" if isinstance(exc, TypeError) else "not a PEM private key"
        raise ConfigError(
            f"{key}.key_file: {str(path)!r} holds no usable private key ({why}; "
            "make one with: openssl genrsa -out dkim.pem 2048)"
        ) from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigError(
            f"{key}.key_file: {str(path)!r} is a {type(private).__name__.lstrip('_')}, "
            "not an RSA key (Gmail verifies rsa-sha256)"
        )
    if private.key_size < MIN_BITS:
        raise ConfigError(
            f"{key}.key_file: a {private.key_size}-bit key is too short "
            f"(receivers refuse under {MIN_BITS}; use 2048)"
        )
    return Signer(selector, domain, private, path)
