"""A scriptable fault-injecting SMTP server on loopback, for the send tests.

aiosmtpd (tests/fixtures_send.py) is the well-behaved server. The faults here sit
between protocol steps that aiosmtpd does not expose (half-way through the body,
between the final dot and its reply, the greeting, an idle timer), so this is a
small asyncio server speaking the part of RFC 5321 smtplib uses: EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT, with dot-unstuffing. No TLS (test_smtp_tls.py covers it).

Everything the server *received* (after the final dot, whether or not the reply
reached the client) is in ``received``, so tests judge from what the server got,
not from what the ledger says.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from tests.servers import free_port

CRLF = b"\r\n"


class Fault(enum.Enum):
    """What the server does to one message of a chosen recipient."""

    DROP_MID_DATA = "drop mid-DATA"  # close half-way through the body: nothing received
    DROP_AFTER_DOT = "drop after the dot"  # keep the message, close instead of replying
    STALL_AFTER_DOT = "stall after the dot"  # keep the message, say nothing for `stall` s


@dataclass(frozen=True)
class Received:
    """One message the server took after the final dot."""

    message_id: str
    recipients: tuple[str, ...]
    data: bytes
    connection: int  # the server's number for the connection it came on
    answered: bool  # whether the server sent its 250 for it


@dataclass
class _Window:
    """A reply given for a while: ``until`` is a time.monotonic() deadline."""

    reply: str | None  # None: close the socket without a word
    until: float = 0.0

    def active(self, now: float) -> bool:
        return now < self.until


@dataclass
class _Trigger:
    """After every ``every``-th received message (or only the first time): close that
    connection and refuse new ones for ``refuse_for`` seconds."""

    every: int
    refuse_for: float
    reply: str | None
    repeat: bool
    start: int  # messages received when the trigger was set
    busy: str | None = None  # instead of closing: answer MAIL FROM with this for refuse_for s
    fired: int = 0


@dataclass
class FaultySmtp:
    """The server and its script; change the script at any time from the test thread."""

    host: str = "127.0.0.1"
    port: int = 0
    # Offer RFC 2920 PIPELINING in the EHLO reply (the commands are read one line at a
    # time either way, so pipelined ones are answered in order as the RFC asks).
    pipelining: bool = False
    # Called with the recipients of each message as its final dot arrives, before the
    # server answers or keeps it: a test looks at the client's state at that moment.
    on_dot: Callable[[tuple[str, ...]], None] | None = None
    stall: float = 5.0  # how long a stall lasts (make it longer than the client's timeout)
    idle_timeout: float | None = None  # close a connection idle this long...
    idle_reply: str | None = "421 4.4.2 faulty.test Error: timeout exceeded"  # ...saying this
    received: list[Received] = field(default_factory=list)
    rcpt_log: list[tuple[str, str]] = field(default_factory=list)  # (address, reply) per RCPT
    connections: int = 0  # connections greeted with 220
    refused: int = 0  # connections refused at the greeting
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rcpt: dict[str, list[str | None]] = field(default_factory=dict)
    _rcpt_always: dict[str, str] = field(default_factory=dict)
    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    _refusing: _Window = field(default_factory=lambda: _Window(None))
    _busy: _Window = field(default_factory=lambda: _Window(None))
    _trigger: _Trigger | None = None
    _stall_mail: int = 0

    # -- the script ---------------------------------------------------------

    def answer_rcpt(self, address: str, reply: str, times: int | None = None) -> None:
        """Answer RCPT TO ``address`` with ``reply`` (e.g. "452 4.2.2 Mailbox full"),
        ``times`` times, or every time when None."""
        with self._lock:
            if times is None:
                self._rcpt_always[address.lower()] = reply
            else:
                self._rcpt.setdefault(address.lower(), []).extend([reply] * times)

    def fault(self, address: str, fault: Fault, times: int = 1) -> None:
        """Do ``fault`` to the next ``times`` messages for ``address``."""
        with self._lock:
            self._faults.setdefault(address.lower(), []).extend([fault] * times)

    def refuse_connections(self, seconds: float, reply: str | None = "421 4.3.2 busy") -> None:
        """For ``seconds``, greet new connections with ``reply`` and close them
        (``reply=None``: close the socket at once, no greeting)."""
        with self._lock:
            self._refusing = _Window(reply, time.monotonic() + seconds)

    def busy(self, seconds: float, reply: str = "451 4.3.0 try again later") -> None:
        """For ``seconds``, answer every MAIL FROM with ``reply`` (a 421 also closes)."""
        with self._lock:
            self._busy = _Window(reply, time.monotonic() + seconds)

    def after_messages(
        self,
        n: int,
        *,
        refuse_for: float = 0.0,
        reply: str | None = "421 4.3.2 service shutting down",
        repeat: bool = False,
        busy: str | None = None,
    ) -> None:
        """After the ``n``-th received message (counted from now; every ``n`` with
        ``repeat``): answer it, close its connection, and refuse new connections
        for ``refuse_for`` seconds with ``reply`` (None: a closed socket). With ``busy``
        the connection stays open and MAIL FROM is answered ``busy`` for ``refuse_for`` s."""
        with self._lock:
            self._trigger = _Trigger(
                n, refuse_for, reply, repeat, start=len(self.received), busy=busy
            )

    def stall_mail(self, times: int = 1) -> None:
        """Say nothing to the next ``times`` MAIL FROM commands for ``stall`` seconds,
        then close (a server hung before the message was handed over)."""
        with self._lock:
            self._stall_mail += times

    # -- what happened ------------------------------------------------------

    def per_recipient(self) -> Counter[str]:
        """How many copies each recipient got (duplicates counted)."""
        with self._lock:
            return Counter(r for msg in self.received for r in msg.recipients)

    def twice(self) -> dict[str, int]:
        """Recipients who got more than one copy."""
        return {a: n for a, n in self.per_recipient().items() if n > 1}

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID arrived."""
        with self._lock:
            return Counter(msg.message_id for msg in self.received)

    def count(self) -> int:
        """How many messages arrived (after the final dot)."""
        with self._lock:
            return len(self.received)

    def rcpt_tries(self, address: str) -> list[str]:
        """The replies the server gave to each RCPT TO ``address``, in order."""
        with self._lock:
            return [reply for a, reply in self.rcpt_log if a == address.lower()]

    # -- the protocol -------------------------------------------------------

    def _take_fault(self, rcpts: list[str]) -> Fault | None:
        with self._lock:
            for address in rcpts:
                queue = self._faults.get(address)
                if queue:
                    return queue.pop(0)
        return None

    def _rcpt_reply(self, address: str) -> str | None:
        with self._lock:
            if address in self._rcpt_always:
                reply = self._rcpt_always[address]
            else:
                queue = self._rcpt.get(address)
                reply = queue.pop(0) if queue else None
            self.rcpt_log.append((address, reply or "250 2.1.5 OK"))
            return reply

    def _record(self, rcpts: list[str], data: bytes, conn: int, answered: bool) -> bool:
        """Keep a message; True when the connection should now close (a trigger fired)."""
        headers = BytesHeaderParser().parsebytes(data)
        msg = Received(str(headers.get("Message-ID", "")), tuple(rcpts), data, conn, answered)
        with self._lock:
            self.received.append(msg)
            t = self._trigger
            if t is None or len(self.received) - t.start < t.every * (t.fired + 1):
                return False
            t.fired += 1
            if not t.repeat:
                self._trigger = None
            if t.busy is not None:
                self._busy = _Window(t.busy, time.monotonic() + t.refuse_for)
                return False
            self._refusing = _Window(t.reply, time.monotonic() + t.refuse_for)
            return True

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(line: str) -> None:
            writer.write(line.encode() + CRLF)
            await writer.drain()

        with self._lock:
            refusing = self._refusing if self._refusing.active(time.monotonic()) else None
            if refusing:
                self.refused += 1
            else:
                self.connections += 1
            conn = self.connections
        if refusing is not None:
            if refusing.reply:
                await say(refusing.reply)
            return
        await say("220 faulty.test ESMTP")
        rcpts: list[str] = []
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
            except TimeoutError:
                if self.idle_reply:
                    await say(self.idle_reply)
                return
            if not line:
                return
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                await say("250-faulty.test" if verb == "EHLO" else "250 faulty.test")
                if verb == "EHLO":
                    await say(("250-" if self.pipelining else "250 ") + "8BITMIME")
                    if self.pipelining:
                        await say("250 PIPELINING")
            elif verb == "MAIL":
                rcpts = []
                with self._lock:
                    busy = self._busy.reply if self._busy.active(time.monotonic()) else None
                stall = self._take_fault_for_mail()
                if stall:
                    await asyncio.sleep(self.stall)
                    return
                if busy:
                    await say(busy)
                    if busy.startswith("421"):
                        return
                else:
                    await say("250 2.1.0 OK")
            elif verb == "RCPT":
                address = command.partition(":")[2].strip().strip("<>").lower()
                reply = self._rcpt_reply(address)
                if reply:
                    await say(reply)
                    if reply.startswith("421"):
                        return
                else:
                    rcpts.append(address)
                    await say("250 2.1.5 OK")
            elif verb == "DATA":
                if not rcpts:
                    await say("503 5.5.1 no valid recipients")
                    continue
                await say("354 end data with <CR><LF>.<CR><LF>")
                fault = self._take_fault(rcpts)
                lines = []
                while True:
                    chunk = await reader.readline()
                    if not chunk:
                        return  # the client went away mid-DATA: nothing received
                    if chunk == b".\r\n":
                        if self.on_dot is not None:
                            self.on_dot(tuple(rcpts))
                        break
                    lines.append(chunk[1:] if chunk.startswith(b".") else chunk)
                    if fault is Fault.DROP_MID_DATA and len(lines) >= 3:
                        return
                data = b"".join(lines)
                if fault is Fault.DROP_AFTER_DOT:
                    self._record(rcpts, data, conn, answered=False)
                    return
                if fault is Fault.STALL_AFTER_DOT:
                    self._record(rcpts, data, conn, answered=False)
                    await asyncio.sleep(self.stall)
                    return
                close = self._record(rcpts, data, conn, answered=True)
                await say(f"250 2.0.0 OK queued as M{conn}x{len(self.received)}")
                rcpts = []
                if close:
                    return
            elif verb == "RSET":
                rcpts = []
                await say("250 2.0.0 OK")
            elif verb == "NOOP":
                await say("250 2.0.0 OK")
            elif verb == "QUIT":
                await say("221 2.0.0 bye")
                return
            else:
                await say("502 5.5.2 command not implemented")

    def _take_fault_for_mail(self) -> bool:
        with self._lock:
            if self._stall_mail:
                self._stall_mail -= 1
                return True
        return False


@contextmanager
def running(server: FaultySmtp) -> Iterator[FaultySmtp]:
    """Serve ``server`` on a loopback port in a thread of its own until the block ends."""
    server.port = server.port or free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def main() -> None:
        tasks: set[asyncio.Task] = set()

        def accept(reader, writer):
            task = loop.create_task(server._session(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        srv = await asyncio.start_server(accept, server.host, server.port)
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        srv.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"the faulty SMTP server did not start on port {server.port}")
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=10)
        loop.close()
