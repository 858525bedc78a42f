"""Brief's subscriber store: lists, people, consent, suppressions, import/export, audience.

Every operation is a plain function taking the ``Engine`` from ``open_store``.
"""

from pipeline.store.audience import Recipient, audience, audience_count
from pipeline.store.db import open_store, upgrade
from pipeline.store.importer import ImportReport, export_csv, import_csv
from pipeline.store.lists import DEFAULT_LIST, ListInfo, create_list, delete_list, lists
from pipeline.store.normalise import address_hash, normalise_email
from pipeline.store.subscribers import (
    AddResult,
    EventInfo,
    MembershipInfo,
    SubscriberDetail,
    SubscriberRow,
    add_subscriber,
    confirm,
    count,
    forget,
    list_subscribers,
    show,
    unsubscribe_by_address,
    unsubscribe_by_token,
)
from pipeline.store.suppress import is_suppressed, suppress
from pipeline.store.tokens import TokenTarget, resolve

__all__ = [
    "DEFAULT_LIST",
    "AddResult",
    "EventInfo",
    "ImportReport",
    "ListInfo",
    "MembershipInfo",
    "Recipient",
    "SubscriberDetail",
    "SubscriberRow",
    "TokenTarget",
    "add_subscriber",
    "address_hash",
    "audience",
    "audience_count",
    "confirm",
    "count",
    "create_list",
    "delete_list",
    "export_csv",
    "forget",
    "import_csv",
    "is_suppressed",
    "list_subscribers",
    "lists",
    "normalise_email",
    "open_store",
    "resolve",
    "show",
    "suppress",
    "unsubscribe_by_address",
    "unsubscribe_by_token",
    "upgrade",
]
