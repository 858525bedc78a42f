"""The subscriber tables as SQLAlchemy Core objects (the code's view of migration 0001)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Deterministic constraint names so later Alembic migrations can alter them by name.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

# JSONB on PostgreSQL so values compare and index; plain JSON text on SQLite.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# Events grow fastest; BIGINT on PostgreSQL, INTEGER on SQLite (so it stays the rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)

STATUSES = ("pending", "confirmed", "unsubscribed")
EVENT_KINDS = (
    "subscribed",
    "confirmed",
    "unsubscribed",
    "bounced",
    "complained",
    "imported",
    "erased",
)

lists = sa.Table(
    "lists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_at", UTC_TIME, nullable=False),
    # What people see (forms, preferences, consent mails); empty shows the name (0007).
    sa.Column("title", sa.String(200), nullable=False, server_default=""),
    # A private list is never offered on the public forms (0007).
    sa.Column("visibility", sa.String(16), nullable=False, server_default="public"),
    sa.CheckConstraint("visibility IN ('public', 'private')", name="list_visibility"),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("email_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("attributes", JSONType, nullable=False),
    # Per-person HMAC key for link tokens; rotating it revokes every link of that person.
    sa.Column("token_key", sa.String(64), nullable=False),
    # Bumped on every new consent; "unsubscribe from everything" links carry it.
    sa.Column("consent_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTC_TIME, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("consent_source", sa.String(200), nullable=False),
    sa.Column("consent_at", UTC_TIME, nullable=False),
    sa.Column("confirmed_at", UTC_TIME),
    sa.Column("unsubscribed_at", UTC_TIME),
    # The subscriber's consent_seq when this consent was given; per-list links carry it.
    sa.Column("consent_seq", sa.Integer, nullable=False),
    sa.UniqueConstraint("subscriber_id", "list_id", name="uq_memberships_subscriber_list"),
    sa.CheckConstraint(
        "status IN ('pending', 'confirmed', 'unsubscribed')", name="membership_status"
    ),
    sa.Index("ix_memberships_audience", "list_id", "status", "subscriber_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
    ),
    sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="SET NULL")),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("detail", sa.String(500)),
    sa.Column("at", UTC_TIME, nullable=False),
    # The issue whose link, message or delivery the event came from, when known (0008):
    # a report says "this issue: 14 unsubscribed, 2 complaints, 31 hard bounces".
    sa.Column("issue_number", sa.Integer),
    sa.Index("ix_events_subscriber", "subscriber_id", "id"),
    sa.Index("ix_events_issue_kind", "issue_number", "kind"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
)

# Consent mails waiting to go out (migration 0006): the public app only queues them, so a
# request costs the same whoever asks; `brief serve` and `brief run` send and retry.
NOTICE_KINDS = ("subscribe", "confirmation", "welcome")

notices = sa.Table(
    "notices",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("list_name", sa.String(64), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    # The confirmation link's token once the membership exists (a retry resends the same).
    sa.Column("token", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", UTC_TIME, nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.CheckConstraint("kind IN ('subscribe', 'confirmation', 'welcome')", name="notice_kind"),
    sa.Index("ix_notices_due_at", "due_at"),
)


# ---------------------------------------------------------------------------
# The send ledger (migrations 0002, 0005): campaigns, one delivery row per recipient,
# and the further senders that joined a running campaign. Read and written in
# ``store.ledger``.

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_number", sa.Integer, nullable=False),
    sa.Column("list_name", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False, server_default=""),
    sa.Column("content_commit", sa.String(64), nullable=False, server_default="unknown"),
    # Migration 0010: the fingerprint of what was sent (content.fingerprint), NULL before.
    sa.Column("content_hash", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("pause_reason", sa.String(500)),
    sa.Column("pause_kind", sa.String(16)),
    sa.Column("total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("holder", sa.String(200)),
    sa.Column("heartbeat", UTC_TIME),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("started_at", UTC_TIME),
    sa.Column("finished_at", UTC_TIME),
    sa.UniqueConstraint("issue_number", "list_name", name="uq_campaigns_issue_list"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("issue_number", sa.Integer, nullable=False),
    sa.Column("subscriber_id", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("permanent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("provider_id", sa.String(300)),
    sa.Column("last_error", sa.String(500)),
    sa.Column("error_code", sa.String(64)),
    # Who claimed the row (a holder name) while it is claimed or in flight: after that
    # sender dies, its rows, and only its, are settled.
    sa.Column("sender", sa.String(200)),
    sa.Column("next_attempt_at", UTC_TIME),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Column("sent_at", UTC_TIME),
    sa.UniqueConstraint("issue_number", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    sa.Index("ix_deliveries_work", "campaign_id", "state", "subscriber_id"),
    # Migration 0009: a provider's event names its message id; the report finds the issue.
    sa.Index("ix_deliveries_provider_id", "provider_id"),
)


# Further senders that joined a running campaign (PostgreSQL only), each with its heartbeat.
campaign_senders = sa.Table(
    "campaign_senders",
    metadata,
    sa.Column(
        "campaign_id",
        sa.Integer,
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("holder", sa.String(200), primary_key=True),
    sa.Column("heartbeat", UTC_TIME, nullable=False),
    sa.Column("joined_at", UTC_TIME, nullable=False),
)


# ---------------------------------------------------------------------------
# The daemon (migration 0003): the leader lock, once-per-slot events, and APScheduler's
# job store, whose layout is APScheduler's (SQLAlchemyJobStore) but whose one owner is
# this schema.

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", UTC_TIME, nullable=False),
    sa.Column("heartbeat", UTC_TIME, nullable=False),
)

slot_events = sa.Table(
    "slot_events",
    metadata,
    sa.Column("slot", sa.Date, primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("issue", sa.Integer),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("detail", sa.String(500), nullable=False, server_default=""),
    sa.Column("at", UTC_TIME, nullable=False),
)

apscheduler_jobs = sa.Table(
    "brief_apscheduler_jobs",
    metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25), index=True),
    sa.Column("job_state", sa.LargeBinary, nullable=False),
)


# ---------------------------------------------------------------------------
# The public side (migration 0004): webhook events applied (and used signature tokens),
# and subscribe-form rate-limit hits.

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("received_at", UTC_TIME, nullable=False),
)

rate_hits = sa.Table(
    "rate_hits",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("at", UTC_TIME, nullable=False),
    sa.Index("ix_rate_hits_scope_key_at", "scope", "key_hash", "at"),
)


# ---------------------------------------------------------------------------
# ``brief db copy`` (migration 0007): in the TARGET database, one row per copied table
# with the last primary key copied, written in the same transaction as each batch, so an
# interrupted copy resumes after the last committed batch and never copies a row twice.
# Never copied itself.

copy_progress = sa.Table(
    "copy_progress",
    metadata,
    sa.Column("table_name", sa.String(64), primary_key=True),
    # The source's URL without its password: a resume must come from the same source.
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("last_key", sa.JSON()),
    sa.Column("copied", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("finished_at", UTC_TIME),
    sa.Column("updated_at", UTC_TIME, nullable=False),
)


# ---------------------------------------------------------------------------
# Reports (migration 0008): the links of each sent issue, each click (or open) of a
# tracked link, and the per-link counts that clicks older than ``[tracking] keep_days``
# are rolled up into. No raw IP address is stored anywhere: at most a truncated network.

links = sa.Table(
    "links",
    metadata,
    sa.Column("issue_number", sa.Integer, primary_key=True),
    # The link's place in the issue (1, 2, ...): the id a tracked URL carries.
    sa.Column("link_id", sa.Integer, primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("text", sa.String(500), nullable=False, server_default=""),
)

CLICK_KINDS = ("click", "open")

clicks = sa.Table(
    "clicks",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("issue_number", sa.Integer, nullable=False),
    # NULL for an open (the pixel is no link).
    sa.Column("link_id", sa.Integer),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
    sa.Column("at", UTC_TIME, nullable=False),
    # A scanner, a prefetch, a burst...: counted apart, with the reasons it was classed so.
    sa.Column("machine", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reasons", sa.String(200), nullable=False, server_default=""),
    # At most a truncated network (IPv4 /24, IPv6 /48), for scanner detection.
    sa.Column("network", sa.String(64)),
    sa.CheckConstraint("kind IN ('click', 'open')", name="click_kind"),
    sa.Index("ix_clicks_issue", "issue_number", "kind", "link_id", "subscriber_id"),
    sa.Index("ix_clicks_subscriber", "subscriber_id"),
    sa.Index("ix_clicks_at", "at"),
    # Migration 0009: the report's counts from the index alone.
    sa.Index("ix_clicks_report", "issue_number", "kind", "machine", "link_id", "subscriber_id"),
)

# Clicks older than keep_days, counted per link and deleted; link_id 0 holds the issue's
# totals (its unique human clickers cannot be summed from the links').
link_counts = sa.Table(
    "link_counts",
    metadata,
    sa.Column("issue_number", sa.Integer, primary_key=True),
    sa.Column("link_id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("human", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("machine", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("human_people", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rolled_at", UTC_TIME, nullable=False),
)
