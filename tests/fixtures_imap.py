"""A real IMAP server for the bounce mailbox: Debian's Dovecot on loopback.

Each test gets its own Dovecot (``dovecot -F -c CONF``) with a throwaway configuration:
its own base_dir, state and log under a private folder, Maildir mail, one static login
(``bounces`` / ``IMAP_PASSWORD``), and two listeners: implicit TLS, and plain with STARTTLS
offered, each with the test CA's certificate for 127.0.0.1
(``tls_files``). Dovecot runs as the current user; as root (a CI container) it runs as
``nobody``, because its login processes refuse to run as root.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port

DOVECOT = Path("/usr/sbin/dovecot")
IMAP_USER = "bounces"
IMAP_PASSWORD = "imap-test-password-7f3a"


@dataclass
class ImapServer:
    """A running Dovecot: its ports, CA, and a way to put and look at mail."""

    host: str
    tls_port: int  # implicit TLS (imaps)
    # plain until STARTTLS; a plain login is allowed too (Brief allows that on loopback only)
    starttls_port: int
    ca: Path
    log: Path

    def _client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca))
        client = imaplib.IMAP4_SSL(self.host, self.tls_port, ssl_context=context, timeout=10)
        client.login(IMAP_USER, IMAP_PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver ``raw`` into ``folder`` (created when missing)."""
        client = self._client()
        try:
            client.create(folder)  # NO when it exists: fine
            typ, _ = client.append(folder, None, None, raw.replace(b"\r\n", b"\n"))
            assert typ == "OK"
        finally:
            client.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in ``folder`` (empty when it does not exist)."""
        client = self._client()
        try:
            typ, _ = client.select(folder, readonly=True)
            if typ != "OK":
                return []
            _, data = client.uid("search", None, "ALL")
            out = []
            for uid in data[0].split():
                _, fetched = client.uid("fetch", uid, "(BODY.PEEK[])")
                out.append(fetched[0][1])
            return out
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> list[str]:
        """Each message's flags in ``folder``."""
        client = self._client()
        try:
            client.select(folder, readonly=True)
            _, data = client.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if d]
        finally:
            client.logout()


def _require_dovecot() -> None:
    if not DOVECOT.exists() or not Path("/usr/lib/dovecot/imap").exists():
        # A skip, and under BRIEF_NO_SKIPS (CI) a failure: .ci/run installs dovecot-imapd.
        pytest.skip("Dovecot is not installed (Debian: dovecot-imapd; .ci/run installs it)")


def _wait_for(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not answer on {port}: {log.read_text()}")


@pytest.fixture
def imap_server(tls_files) -> Iterator[ImapServer]:
    """A Dovecot IMAP server on loopback with an empty mailbox (see the module)."""
    _require_dovecot()
    import pwd

    as_root = os.geteuid() == 0
    account = pwd.getpwnam("nobody") if as_root else pwd.getpwuid(os.getuid())
    import grp

    group = grp.getgrgid(account.pw_gid).gr_name
    # Not under tmp_path: as root that folder is 0700 and nobody could not reach it.
    folder = Path(tempfile.mkdtemp(prefix="brief-dovecot-"))
    folder.chmod(0o755)
    for name in ("server.pem", "server.key"):
        src = tls_files.cert if name.endswith("pem") else tls_files.key
        shutil.copyfile(src, folder / name)
    tls_port, starttls_port = free_port(), free_port()
    log = folder / "dovecot.log"
    conf = folder / "dovecot.conf"
    conf.write_text(
        f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{folder}/server.pem
ssl_key = <{folder}/server.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
disable_plaintext_auth = no
default_internal_user = {account.pw_name}
default_internal_group = {group}
default_login_user = {account.pw_name}
first_valid_uid = {min(account.pw_uid, 1)}
mail_location = maildir:{folder}/mail/%u
passdb {{
  driver = static
  args = password={IMAP_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={account.pw_uid} gid={account.pw_gid} home={folder}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""
    )
    if as_root:
        owner = f"{account.pw_uid}:{account.pw_gid}"
        subprocess.run(["chown", "-R", owner, str(folder)], check=True)
    user = account.pw_name if as_root else None
    proc = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(conf)],
        user=user,
        group=group if as_root else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(starttls_port, proc, log)  # the plain greeting: no TLS needed to see it
        yield ImapServer("127.0.0.1", tls_port, starttls_port, tls_files.ca, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
