"""Read brief.toml and the environment into frozen settings.

brief.toml is found like git finds .git: from the working directory upward,
unless ``--config PATH`` or ``BRIEF_CONFIG`` names it. Secrets never live in
the file; they come from environment variables and are read through
``Settings.secret(NAME)`` so they are never printed with the settings.
Every bad key is one ``ConfigError`` naming the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import ConfigError
from pipeline.plugins import PROVIDERS, WEBHOOKS, Registry, TableSchema, schema_of

CONFIG_NAME = "brief.toml"

_UNAPPROVED = ("skip", "send")

# List names as the store accepts them (store.lists uses this same pattern): a slug.
LIST_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# A BCP 47 language tag (it goes into <html lang> and the feed).
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
# Control characters: a NUL is refused by the OS and PostgreSQL, a line break in a
# name or address would split a mail header. Only the postal address may span lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MULTILINE_KEYS = frozenset({"newsletter.postal_address"})
# Numbers that fail later past a bound: (low, high), inclusive. Grace longer than the
# cadence means nothing (and 1e308 hours overflows a timedelta); past ~1000 retries the
# backoff overflows a float; timeouts must be a positive real for socket.settimeout; the
# integer limits stay inside PostgreSQL's BIGINT.
GRACE_HOURS = (0, 14 * 24)
RATE_PER_SECOND = (0, 100_000)
MAX_RETRIES = (0, 50)
GUARD_WINDOW = (1, 10_000_000)
PER_HOUR = (0, 1_000_000)
MAX_BODY_BYTES = (1024, 100 * 1024 * 1024)
_HTTP_URL = re.compile(r"^https?://[^/\s]+\S*$")
# The [provider] keys that are not a provider's own table.
_PROVIDER_KEYS = frozenset({"name", "rate_per_second", "concurrency", "max_retries", "batch_size"})


@dataclass(frozen=True)
class Newsletter:
    """Who the newsletter is: name, addresses, where it lives on the web."""

    name: str
    from_address: str
    from_name: str
    reply_to: str
    postal_address: str
    base_url: str
    editors: tuple[str, ...]
    default_list: str
    language: str
    # The first line per reader: "{name}" is the reader's name; readers without
    # one get greeting_no_name; an empty greeting leaves that reader without the line.
    greeting: str = "Hi {name},"
    greeting_no_name: str = "Hi there,"

    def greet(self, name: str) -> str:
        """The greeting line for a reader called ``name`` ("" when unknown)."""
        # replace, not str.format: a name is data, never a format spec.
        return self.greeting.replace("{name}", name) if name else self.greeting_no_name

    @property
    def domain(self) -> str:
        """The sending domain: the part of from_address after the @."""
        return self.from_address.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Schedule:
    """The every-other-Wednesday cadence, in the newsletter's time zone."""

    timezone: ZoneInfo
    anchor: date
    send_time: time
    assemble_ahead_days: int
    unapproved: str
    grace_hours: float


@dataclass(frozen=True)
class Database:
    url: str


@dataclass(frozen=True)
class ProviderSettings:
    """Which provider sends, how fast, and each provider's own table."""

    name: str
    rate_per_second: float
    concurrency: int
    max_retries: int
    batch_size: int
    # Each [provider.<name>] table in brief.toml, checked by that provider's own schema.
    tables: Mapping[str, Mapping[str, Any]]

    def table(self, name: str | None = None) -> Mapping[str, Any]:
        """The settings table of one provider (the configured one by default) as written
        in brief.toml, checked; empty when brief.toml has none (``providers.provider_setup``
        fills in the provider's defaults)."""
        return self.tables.get(name or self.name, MappingProxyType({}))


@dataclass(frozen=True)
class SendSettings:
    """The reputation guard (pause when early permanent failures pass a threshold), and
    whether a standing-by daemon joins a running send (PostgreSQL only)."""

    guard_ratio: float
    guard_window: int
    workers_may_join: bool = False


@dataclass(frozen=True)
class WebSettings:
    """The public side: welcome email and the subscribe form's rate limits."""

    welcome_email: bool
    subscribe_per_address_per_hour: int
    subscribe_per_ip_per_hour: int
    max_body_bytes: int
    # Addresses or networks whose X-Forwarded-For is believed (empty: nobody's).
    trusted_proxies: tuple[str, ...] = ()
    # Each [webhooks.<name>] table, checked by that webhook verifier's own schema.
    webhooks: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))

    def webhook_table(self, name: str) -> Mapping[str, Any]:
        """The settings table of one webhook verifier as written (empty when there is none)."""
        return self.webhooks.get(name, MappingProxyType({}))


@dataclass(frozen=True)
class BounceSettings:
    """``[bounces]``: the mailbox where bounces, complaints and mailto unsubscribes arrive
    (IMAP; the password from ``BRIEF_BOUNCES_PASSWORD``). No ``imap_host``: no mailbox,
    and no mailto address in List-Unsubscribe (nothing would read it)."""

    imap_host: str = ""
    port: int = 993
    tls: str = "implicit"  # implicit | starttls | none (loopback only)
    username: str = ""
    folder: str = "INBOX"
    # Where a message goes once its result is stored; "" flags it \Seen instead.
    processed_folder: str = "Processed"
    ca_file: str = ""  # a PEM CA bundle to trust instead of the system's
    timeout: float = 30.0
    # Soft bounces (4.x.x) for the same address in this many different issues: hard.
    soft_bounce_limit: int = 3
    interval_minutes: int = 5  # how often `brief run` reads the mailbox
    # The List-Unsubscribe mailto address (read from this same mailbox); "" leaves it out.
    unsubscribe_address: str = ""

    @property
    def configured(self) -> bool:
        """Whether a mailbox is there to read."""
        return bool(self.imap_host)


@dataclass(frozen=True)
class TrackingSettings:
    """``[tracking]``: which reader actions are measured, and how long per-click rows live
    before they are rolled up into per-link counts (no person in them)."""

    clicks: bool = True
    # Off by default: pixels are mostly fetched by Apple's proxy, not read by people.
    opens: bool = False
    keep_days: int = 90


@dataclass(frozen=True)
class SiteSettings:
    """``[site]``: where the static web archive is written, and whether a finished send
    rebuilds it (so on a static host the new issue, and the welcome mail's link to the
    latest issue, are there at once)."""

    out: Path | None = None  # None: site/ next to brief.toml, and no rebuild by default
    rebuild_after_send: bool = False

    def target(self, root: Path) -> Path:
        """The folder the archive goes to."""
        return self.out if self.out is not None else root / "site"


@dataclass(frozen=True)
class DoctorSettings:
    """``brief doctor``: which DNS server to ask and what the From domain's SPF must allow."""

    # "" asks the system's resolver; "host" or "host:port" asks that server only (a
    # resolver you trust, or a local one in tests).
    resolver: str = ""
    resolver_port: int = 53
    # SPF mechanisms the record must hold, e.g. "include:_spf.relay.example" or
    # "ip4:203.0.113.7"; empty: the provider's own include, or the SMTP relay's address.
    spf_expect: tuple[str, ...] = ()
    timeout: float = 5.0


@dataclass(frozen=True)
class Settings:
    """Everything Brief needs to know, read once and passed down."""

    path: Path
    root: Path
    newsletter: Newsletter
    schedule: Schedule
    database: Database
    provider: ProviderSettings
    send: SendSettings
    web: WebSettings
    env: Mapping[str, str] = field(repr=False, compare=False)
    bounces: BounceSettings = field(default_factory=BounceSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    site: SiteSettings = field(default_factory=SiteSettings)
    doctor: DoctorSettings = field(default_factory=lambda: DoctorSettings())

    @property
    def state_dir(self) -> Path:
        """Local state, never committed: database, outbox, previews."""
        return self.root / ".brief"

    def content_dir(self, name: str) -> Path:
        return self.root / name

    def secret(self, name: str, default: str | None = None) -> str | None:
        """A secret from the environment; never from brief.toml."""
        return self.env.get(name, default)


def find_config(
    start: Path | None = None,
    explicit: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Locate brief.toml: explicit path, then BRIEF_CONFIG, then upward from start."""
    env = os.environ if env is None else env
    named = explicit or env.get("BRIEF_CONFIG")
    if named:
        path = Path(named).expanduser()
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(f"config: no settings file at {path}")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"config: no {CONFIG_NAME} in {here} or any parent (use --config PATH or BRIEF_CONFIG)"
    )


def load_settings(
    explicit: str | os.PathLike | None = None,
    *,
    start: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Find, read and validate brief.toml into Settings."""
    env = dict(os.environ if env is None else env)
    path = find_config(start, explicit, env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValueError as exc:
        # tomllib lets int() refuse an integer past Python's digit limit as a bare
        # ValueError; its advice (sys.set_int_max_str_digits) is for programmers.
        reason = str(exc).partition(";")[0]
        raise ConfigError(f"{path}: not valid TOML: {reason}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_settings(raw, path, env)


MAX_GREETING = 200
_BRACED = re.compile(r"\{[^{}]*\}")


def _greeting(value: str, key: str) -> str:
    """A greeting line: one line, at most 200 characters; only ``greeting`` may hold
    ``{name}``, and nothing else may stand in braces (a typo would reach every reader)."""
    dotted = f"newsletter.{key}"
    if len(value) > MAX_GREETING:
        raise ConfigError(f"{dotted}: {len(value)} characters; {MAX_GREETING} at most")
    allowed = {"{name}"} if key == "greeting" else set()
    for found in _BRACED.findall(value):
        if found not in allowed:
            hint = (
                "only {name} may stand in braces"
                if key == "greeting"
                else "it is for readers without a name, so it cannot hold {name}"
            )
            raise ConfigError(f"{dotted}: {found} is not allowed: {hint}")
    return value


# The keys each section of brief.toml may hold; any other key is refused by name.
_SECTIONS = frozenset(
    {
        "newsletter",
        "schedule",
        "database",
        "provider",
        "send",
        "web",
        "webhooks",
        "bounces",
        "tracking",
        "site",
        "doctor",
    }
)
_SITE_KEYS = frozenset({"out", "rebuild_after_send"})
_NEWSLETTER_KEYS = frozenset(
    {
        "name",
        "from_address",
        "from_name",
        "reply_to",
        "postal_address",
        "base_url",
        "editors",
        "default_list",
        "language",
        "greeting",
        "greeting_no_name",
    }
)
_SCHEDULE_KEYS = frozenset(
    {
        "timezone",
        "anchor",
        "send_time",
        "assemble_ahead_days",
        "unapproved",
        "catch_up_grace_hours",
    }
)
_SEND_KEYS = frozenset({"guard_ratio", "guard_window", "workers_may_join"})
_WEB_KEYS = frozenset(
    {
        "welcome_email",
        "subscribe_per_address_per_hour",
        "subscribe_per_ip_per_hour",
        "max_body_bytes",
        "trusted_proxies",
    }
)


def parse_settings(raw: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Settings:
    """Validate an already parsed TOML document into Settings.

    One reader per section, called in the order brief.toml documents them: a file with
    several mistakes reports the same first one every time.
    """
    r = _Reader(raw)
    r.only("", _SECTIONS)
    root = path.parent
    newsletter = _read_newsletter(r)
    schedule = _read_schedule(r)
    database = _read_database(r, root)
    provider = _read_provider(r)
    send = _read_send(r, database)
    web = _read_web(r)
    bounces = _read_bounces(r)
    tracking = _read_tracking(r)
    site = _read_site(r, root)
    doctor = _read_doctor(r)
    return Settings(
        path=path,
        root=root,
        newsletter=newsletter,
        schedule=schedule,
        database=database,
        provider=provider,
        send=send,
        web=web,
        env=MappingProxyType(dict(env)),
        bounces=bounces,
        tracking=tracking,
        site=site,
        doctor=doctor,
    )


def _read_newsletter(r: _Reader) -> Newsletter:
    """``[newsletter]`` (required): names, addresses, base URL, list, language, greetings."""
    nl = r.section("newsletter")
    r.only("newsletter", _NEWSLETTER_KEYS)
    from_address = _address("newsletter.from_address", r.get(nl, "newsletter.from_address", str))
    base_url = r.get(nl, "newsletter.base_url", str).rstrip("/")
    if not _HTTP_URL.match(base_url):
        raise ConfigError("newsletter.base_url: must be an absolute http(s) URL without spaces")
    editors = r.get(nl, "newsletter.editors", list, [])
    if not all(isinstance(e, str) for e in editors):
        raise ConfigError("newsletter.editors: must be a list of email addresses")
    for e in editors:
        _address("newsletter.editors", e)
    name = r.get(nl, "newsletter.name", str)
    default_list = r.get(nl, "newsletter.default_list", str, "main")
    if not LIST_NAME.fullmatch(default_list):
        raise ConfigError(
            f"newsletter.default_list: {default_list!r} is not a list name: use 1 to 64 "
            "lower-case letters, digits, '-' and '_'"
        )
    language = r.get(nl, "newsletter.language", str, "en")
    if not _LANGUAGE.fullmatch(language):
        raise ConfigError(
            f"newsletter.language: {language!r} is not a language tag like en or pt-BR"
        )
    greeting = _greeting(r.get(nl, "newsletter.greeting", str, "Hi {name},"), "greeting")
    greeting_no_name = _greeting(
        r.get(nl, "newsletter.greeting_no_name", str, "Hi there,"), "greeting_no_name"
    )
    from_name = r.get(nl, "newsletter.from_name", str, name)
    reply_to = _address("newsletter.reply_to", r.get(nl, "newsletter.reply_to", str, from_address))
    return Newsletter(
        greeting=greeting,
        greeting_no_name=greeting_no_name,
        name=name,
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        postal_address=r.get(nl, "newsletter.postal_address", str),
        base_url=base_url,
        editors=tuple(editors),
        default_list=default_list,
        language=language,
    )


def _read_schedule(r: _Reader) -> Schedule:
    """``[schedule]`` (required): time zone, a Wednesday anchor, send time, catch-up rules."""
    sc = r.section("schedule")
    r.only("schedule", _SCHEDULE_KEYS)
    tz_name = r.get(sc, "schedule.timezone", str)
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"schedule.timezone: unknown time zone {tz_name!r} "
            "(use an IANA name like Europe/London)"
        ) from None
    anchor = r.get(sc, "schedule.anchor", (date, str))
    if isinstance(anchor, str):
        try:
            anchor = date.fromisoformat(anchor)
        except ValueError:
            raise ConfigError("schedule.anchor: must be a date like 2026-12-02") from None
    if hasattr(anchor, "hour"):  # a TOML datetime is a date subclass too
        raise ConfigError("schedule.anchor: must be a date (YYYY-MM-DD), not a datetime")
    if anchor.weekday() != 2:
        raise ConfigError(
            f"schedule.anchor: {anchor.isoformat()} is a {anchor.strftime('%A')}; "
            "it must be a Wednesday on the cadence"
        )
    send_time_raw = r.get(sc, "schedule.send_time", (str, time), "08:00")
    if isinstance(send_time_raw, time):
        send_time = send_time_raw
    else:
        m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", send_time_raw)
        if not m:
            raise ConfigError("schedule.send_time: must be HH:MM in 24-hour local time, e.g. 08:00")
        send_time = time(int(m[1]), int(m[2]))
    ahead = r.get(sc, "schedule.assemble_ahead_days", int, 3)
    if not 0 <= ahead <= 13:
        raise ConfigError("schedule.assemble_ahead_days: must be between 0 and 13")
    unapproved = r.get(sc, "schedule.unapproved", str, "skip")
    if unapproved not in _UNAPPROVED:
        raise ConfigError(f"schedule.unapproved: must be one of {', '.join(_UNAPPROVED)}")
    grace = r.number(sc, "schedule.catch_up_grace_hours", GRACE_HOURS, 6)
    return Schedule(tz, anchor, send_time, ahead, unapproved, grace)


def _read_database(r: _Reader, root: Path) -> Database:
    """``[database]`` (optional): the store's URL, a relative SQLite path taken from ``root``."""
    db = r.section("database", required=False)
    r.only("database", {"url"})
    url = r.get(db, "database.url", str, "sqlite:///.brief/brief.db")
    return Database(_resolve_sqlite(url, root))


def _read_provider(r: _Reader) -> ProviderSettings:
    """``[provider]`` (optional): the sending pace, and each ``[provider.<name>]`` table
    checked by that provider plug-in's own schema."""
    pv = r.section("provider", required=False)
    tables = _plugin_tables(r, PROVIDERS, pv, _PROVIDER_KEYS)
    name = r.get(pv, "provider.name", str, "outbox")
    rate = r.number(pv, "provider.rate_per_second", RATE_PER_SECOND, 0)
    concurrency = r.get(pv, "provider.concurrency", int, 4)
    if not 1 <= concurrency <= 64:
        raise ConfigError("provider.concurrency: must be between 1 and 64")
    max_retries = int(r.number(pv, "provider.max_retries", MAX_RETRIES, 5, whole=True))
    batch_size = r.get(pv, "provider.batch_size", int, 100)
    if not 1 <= batch_size <= 10_000:
        raise ConfigError("provider.batch_size: must be between 1 and 10000")
    return ProviderSettings(
        name, rate, concurrency, max_retries, batch_size, MappingProxyType(tables)
    )


def _read_send(r: _Reader, database: Database) -> SendSettings:
    """``[send]`` (optional): the reputation guard; joining a send needs PostgreSQL."""
    sd = r.section("send", required=False)
    r.only("send", _SEND_KEYS)
    # Compared before float(): an integer past any float (10**400) would overflow it.
    guard_ratio = r.get(sd, "send.guard_ratio", (int, float), 0.05)
    if not 0 < guard_ratio <= 1:
        raise ConfigError("send.guard_ratio: must be a fraction between 0 and 1, e.g. 0.05")
    guard_ratio = float(guard_ratio)
    guard_window = int(r.number(sd, "send.guard_window", GUARD_WINDOW, 500, whole=True))
    workers_may_join = r.get(sd, "send.workers_may_join", bool, False)
    if workers_may_join and not database.url.startswith("postgresql"):
        raise ConfigError(
            "send.workers_may_join: needs PostgreSQL ([database] url); SQLite has one writer "
            "at a time, so a second sender would only wait for the first one's locks"
        )
    return SendSettings(guard_ratio, guard_window, workers_may_join)


def _read_web(r: _Reader) -> WebSettings:
    """``[web]`` (optional): welcome email, subscribe limits, trusted proxies; with the
    ``[webhooks]`` tables, which WebSettings carries."""
    wb = r.section("web", required=False)
    r.only("web", _WEB_KEYS)
    # [webhooks] is read here, after [web]'s keys and before their values, so a file with
    # mistakes in both reports the same one first as it always has.
    hooks = _read_webhooks(r)
    web = WebSettings(
        welcome_email=r.get(wb, "web.welcome_email", bool, False),
        subscribe_per_address_per_hour=r.get(wb, "web.subscribe_per_address_per_hour", int, 3),
        subscribe_per_ip_per_hour=r.get(wb, "web.subscribe_per_ip_per_hour", int, 20),
        max_body_bytes=r.get(wb, "web.max_body_bytes", int, 64 * 1024),
        trusted_proxies=_networks(r.get(wb, "web.trusted_proxies", list, [])),
        webhooks=hooks,
    )
    for key, bounds in (
        ("subscribe_per_address_per_hour", PER_HOUR),
        ("subscribe_per_ip_per_hour", PER_HOUR),
        ("max_body_bytes", MAX_BODY_BYTES),
    ):
        r.number({key: getattr(web, key)}, f"web.{key}", bounds, whole=True)
    return web


def _read_doctor(r: _Reader) -> DoctorSettings:
    """``[doctor]`` (optional): the DNS resolver ``brief doctor`` asks, the SPF it expects."""
    d = r.section("doctor", required=False)
    r.only("doctor", {"resolver", "spf_expect", "timeout"})
    resolver = r.get(d, "doctor.resolver", str, "").strip()
    host, port = resolver, 53
    if resolver:
        found = re.fullmatch(r"\[?([0-9A-Fa-f:.]+?)\]?(?::(\d{1,5}))?", resolver)
        if found and resolver.count(":") > 1 and not resolver.startswith("["):
            found = re.fullmatch(r"([0-9A-Fa-f:]+)()", resolver)  # a bare IPv6 address
        try:
            if not found:
                raise ValueError
            host = str(ipaddress.ip_address(found.group(1)))
            port = int(found.group(2) or 53)
        except ValueError:
            raise ConfigError(
                f"doctor.resolver: {resolver!r} is not an IP address with an optional port "
                "(e.g. 127.0.0.1:5353 or [::1]:53)"
            ) from None
        r.number({"resolver": port}, "doctor.resolver", (1, 65535), whole=True)
    expect = r.get(d, "doctor.spf_expect", list, [])
    for item in expect:
        if not isinstance(item, str) or not re.fullmatch(
            r"(include:[A-Za-z0-9._-]+|ip4:[0-9./]+|ip6:[0-9A-Fa-f:./]+)", item
        ):
            raise ConfigError(
                f"doctor.spf_expect: {item!r} is not an SPF mechanism "
                "(include:DOMAIN, ip4:ADDRESS[/BITS] or ip6:ADDRESS[/BITS])"
            )
    timeout = r.number(d, "doctor.timeout", (0.1, 60), 5.0)
    return DoctorSettings(host, port, tuple(expect), timeout)


def _read_webhooks(r: _Reader) -> Mapping[str, Mapping[str, Any]]:
    """``[webhooks]`` (optional): each ``[webhooks.<name>]`` table, checked by that webhook
    verifier plug-in's own schema."""
    hooks = _plugin_tables(r, WEBHOOKS, r.section("webhooks", required=False), frozenset())
    return MappingProxyType(hooks)


_BOUNCES_KEYS = frozenset(
    {
        "imap_host",
        "port",
        "tls",
        "username",
        "folder",
        "processed_folder",
        "ca_file",
        "timeout",
        "soft_bounce_limit",
        "interval_minutes",
        "unsubscribe_address",
    }
)
SOFT_BOUNCE_LIMIT = (1, 100)
INTERVAL_MINUTES = (1, 24 * 60)
BOUNCES_TIMEOUT = (0.1, 600)


def _read_bounces(r: _Reader) -> BounceSettings:
    """``[bounces]`` (optional): the bounce mailbox; the password only from the
    environment (``BRIEF_BOUNCES_PASSWORD``, checked when the mailbox is opened)."""
    bs = r.section("bounces", required=False)
    r.only("bounces", _BOUNCES_KEYS)
    d = BounceSettings()
    host = r.get(bs, "bounces.imap_host", str, d.imap_host).strip()
    tls = r.get(bs, "bounces.tls", str, d.tls)
    if tls not in ("implicit", "starttls", "none"):
        raise ConfigError("bounces.tls: must be one of implicit, starttls, none")
    if tls == "none" and host and not is_loopback(host):
        raise ConfigError(
            f"bounces.tls: 'none' is allowed only for a loopback host, not {host!r} "
            "(use implicit or starttls)"
        )
    unsub = r.get(bs, "bounces.unsubscribe_address", str, "")
    if unsub:
        _address("bounces.unsubscribe_address", unsub)
        if not host:
            raise ConfigError(
                "bounces.unsubscribe_address: needs bounces.imap_host (a mailbox that reads "
                "it); without one the address is left out of List-Unsubscribe"
            )
    folder = r.get(bs, "bounces.folder", str, d.folder)
    if not folder.strip():
        raise ConfigError("bounces.folder: must name a folder, e.g. INBOX")
    processed = r.get(bs, "bounces.processed_folder", str, d.processed_folder)
    if processed and processed == folder:
        raise ConfigError("bounces.processed_folder: must differ from bounces.folder")
    return BounceSettings(
        imap_host=host,
        port=int(r.number(bs, "bounces.port", (1, 65535), 993 if tls == "implicit" else 143, True)),
        tls=tls,
        username=r.get(bs, "bounces.username", str, d.username),
        folder=folder,
        processed_folder=processed,
        ca_file=r.get(bs, "bounces.ca_file", str, d.ca_file),
        timeout=r.number(bs, "bounces.timeout", BOUNCES_TIMEOUT, d.timeout),
        soft_bounce_limit=int(
            r.number(bs, "bounces.soft_bounce_limit", SOFT_BOUNCE_LIMIT, d.soft_bounce_limit, True)
        ),
        interval_minutes=int(
            r.number(bs, "bounces.interval_minutes", INTERVAL_MINUTES, d.interval_minutes, True)
        ),
        unsubscribe_address=unsub,
    )


_TRACKING_KEYS = frozenset({"clicks", "opens", "keep_days"})
KEEP_DAYS = (1, 3650)


def _read_tracking(r: _Reader) -> TrackingSettings:
    """``[tracking]`` (optional): click tracking (on), the open pixel (off), keep_days."""
    ts = r.section("tracking", required=False)
    r.only("tracking", _TRACKING_KEYS)
    d = TrackingSettings()
    return TrackingSettings(
        clicks=r.get(ts, "tracking.clicks", bool, d.clicks),
        opens=r.get(ts, "tracking.opens", bool, d.opens),
        keep_days=int(r.number(ts, "tracking.keep_days", KEEP_DAYS, d.keep_days, True)),
    )


def _read_site(r: _Reader, root: Path) -> SiteSettings:
    """``[site]`` (optional): the archive's folder (relative to brief.toml) and whether a
    finished send rebuilds it (default: yes once ``out`` is set)."""
    st = r.section("site", required=False)
    r.only("site", _SITE_KEYS)
    out_text = r.get(st, "site.out", str, "").strip()
    out = None
    if out_text:
        out = Path(out_text).expanduser()
        out = out if out.is_absolute() else root / out
        if out.resolve() == root.resolve():
            raise ConfigError("site.out: must not be the newsletter's own folder")
    rebuild = r.get(st, "site.rebuild_after_send", bool, out is not None)
    return SiteSettings(out=out, rebuild_after_send=rebuild)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: where plain text (no TLS) may be allowed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: str, root: Path, key: str) -> ssl.SSLContext:
    """A verifying TLS context: the system's trust store, or only ``ca_file`` (relative to
    brief.toml) when set; a missing or unreadable file is a ConfigError naming ``key``.
    SMTP and the bounce mailbox verify their servers the same way."""
    if not ca_file:
        return ssl.create_default_context()
    path = Path(ca_file).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {str(path)!r}")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ConfigError(f"{key}: {str(path)!r} holds no PEM certificate ({exc.reason})") from None


def _networks(values: list) -> tuple[str, ...]:
    """``web.trusted_proxies`` checked here: uvicorn would take a typo for a host name."""
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value if isinstance(value, str) else "", strict=False)
        except ValueError:
            raise ConfigError(
                f"web.trusted_proxies: {value!r} is not an IP address or network "
                "like 127.0.0.1 or 10.0.0.0/8"
            ) from None
    return tuple(values)


def _plugin_tables(
    r: _Reader, registry: Registry, section: Mapping, fixed: frozenset[str]
) -> dict[str, Mapping[str, Any]]:
    """Each ``[<section>.<name>]`` table, checked by the schema of the plug-in ``name``.

    Any installed plug-in's name is a table here, a third party's as much as a built-in;
    a table for a name nobody installed is refused, naming it (a typo would otherwise
    leave a provider on its defaults without a word).
    """
    tables: dict[str, Mapping[str, Any]] = {}
    for name, raw in section.items():
        if name in fixed:
            continue
        key = f"{registry.section}.{name}"
        if not isinstance(raw, dict):
            if name in registry.available():
                raise ConfigError(f"{key}: must be a table [{key}]")
            r.only(registry.section, set(fixed) | set(registry.available()), {name: raw})
        plugin = registry.load(name, key)
        tables[name] = read_table(key, schema_of(plugin), raw)
    return tables


def read_table(key: str, schema: TableSchema, raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """A plug-in's settings table checked against its schema, every key present (the
    defaults filled in); each bad key one ConfigError naming it, e.g. ``provider.smtp.port``.
    """
    r = _Reader(raw)
    r.only(key, set(schema), raw)
    values: dict[str, Any] = {}
    for name, spec in schema.items():
        dotted = f"{key}.{name}"
        value = r.get(raw, dotted, spec.types, spec.default)
        if spec.bounds is not None:
            r.number({name: value}, dotted, spec.bounds)
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{dotted}: must be one of {', '.join(spec.choices)}")
        if spec.url and value and not _HTTP_URL.match(value):
            raise ConfigError(f"{dotted}: must be an absolute http(s) URL")
        if spec.check is not None:
            value = spec.check(dotted, value)
        values[name] = value
    return MappingProxyType(values)


def _resolve_sqlite(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the config file, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith(":"):
            return prefix + str((root / rest).resolve())
    return url


def _address(key: str, value: str) -> str:
    """``value`` unchanged if it is an address a header can carry; else a ConfigError."""
    from email_validator import EmailNotValidError, validate_email

    try:
        # The rules the store applies to subscribers, without DNS.
        validate_email(
            value, check_deliverability=False, allow_smtputf8=False, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        raise ConfigError(f"{key}: {value!r} is not an email address ({exc})") from None
    return value


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    date: "a date",
    time: "a time",
    dict: "a table",
}


class _Reader:
    """Typed access to the raw TOML, each failure naming the dotted key."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw

    def section(self, key: str, required: bool = True, within: Mapping | None = None) -> Mapping:
        base = self.raw if within is None else within
        name = key.rpartition(".")[2]
        value = base.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{key}: missing section [{key}]")
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a table [{key}]")
        return value

    def only(self, section: str, allowed: AbstractSet[str], table: Mapping | None = None) -> None:
        if table is None:
            table = self.raw
            for part in filter(None, section.split(".")):
                table = table.get(part, {}) if isinstance(table, dict) else {}
        for key in table:
            if key not in allowed:
                where = f"{section}.{key}" if section else key
                if re.search(r"pass|secret|token|api_?key", key, re.I):
                    raise ConfigError(
                        f"{where}: secrets never go in brief.toml; "
                        "set the environment variable named in the README instead"
                    )
                raise ConfigError(
                    f"{where}: unknown key (allowed here: {', '.join(sorted(allowed))})"
                )

    def get(self, table: Mapping, key: str, types, default: Any = ...) -> Any:
        name = key.rpartition(".")[2]
        if name not in table:
            if default is ...:
                raise ConfigError(f"{key}: missing (required)")
            return default
        value = table[name]
        types_t = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python; a TOML true must not pass for a number.
        ok = isinstance(value, types_t) and not (isinstance(value, bool) and bool not in types_t)
        if not ok:
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types_t)
            raise ConfigError(f"{key}: must be {wanted}, got {value!r}")
        if isinstance(value, str):
            control = (_CONTROL_MULTILINE if key in _MULTILINE_KEYS else _CONTROL).search(value)
            if control:
                raise ConfigError(
                    f"{key}: must not contain control characters (found U+{ord(control[0]):04X})"
                )
        return value

    def number(
        self,
        table: Mapping,
        key: str,
        bounds: tuple[float, float],
        default: Any = ...,
        whole: bool = False,
    ) -> float:
        """A finite number within ``bounds`` (inclusive); ``whole`` wants an integer."""
        value = self.get(table, key, int if whole else (int, float), default)
        low, high = bounds
        # A TOML float may be nan or inf; an integer may be past any float (10**400), so
        # it is compared as an integer, never converted (math.isfinite would overflow).
        finite = isinstance(value, int) or math.isfinite(value)
        if not (finite and low <= value <= high):
            raise ConfigError(f"{key}: must be between {low:g} and {high:g}, got {value!r}")
        return value if whole else float(value)
