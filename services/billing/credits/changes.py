"""What follows any change of a company's credits, in the transaction that made it.

Every grant, void, expiry, mode change and batch of draws ends here with the
accounts it changed (locked, as they now stand): a `CreditsChanged` per company
goes to billing's outbox (the whole account, with a higher revision, so the
question service keeps the latest whatever the arrival order), and the
low-balance webhook is enqueued where the balance has just fallen below the
threshold (`rules.low_balance`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from uuid import UUID

from contracts.events import CreditLeft, CreditsChanged
from services.billing.credits import store
from services.billing.credits.rules import (
    LOW_BALANCE_EVENT_TYPE,
    Grant,
    low_balance,
    low_balance_body,
    low_balance_event_id,
)
from services.billing.credits.store import Account
from services.billing.webhooks import store as webhooks
from services.billing.webhooks.rules import DeliveryPolicy
from services.servicekit import outbox
from services.servicekit.db import Connection

GIVE_UP_AFTER = DeliveryPolicy().give_up_after
# The deliveries table keys budget webhooks by (company, period, threshold): a low-balance
# alert takes a "period" of its own per alert number, and the lowest threshold there is.
ALERT_THRESHOLD = 1


def alert_period(alert: int) -> str:
    return f"credits-low-balance:{alert}"


def credits_changed(
    account: Account,
    left: Sequence[Grant],
    now: datetime,
    counted: Sequence[UUID] = (),
) -> CreditsChanged:
    return CreditsChanged(
        event_id=uuid.uuid4(),
        occurred_at=now,
        company_id=account.company_id,
        revision=account.revision,
        mode=account.mode,
        balance=account.balance,
        low_balance_threshold=account.low_balance_threshold,
        grants=[
            CreditLeft(
                grant_id=grant.grant_id,
                remaining=grant.remaining,
                priority=grant.priority,
                effective_at=grant.effective_at,
                expires_at=grant.expires_at,
            )
            for grant in left
        ],
        counted_generations=list(counted),
    )


def low_balance_delivery(account: Account, now: datetime) -> webhooks.NewDelivery:
    """The account's latest alert (its `low_balance_alerts`-th), as a webhook to deliver."""
    assert account.low_balance_threshold is not None
    alert = account.low_balance_alerts
    return webhooks.NewDelivery(
        event_id=low_balance_event_id(account.company_id, alert),
        company_id=account.company_id,
        period=alert_period(alert),
        threshold=ALERT_THRESHOLD,
        body=low_balance_body(
            account.company_id, alert, account.balance, account.low_balance_threshold, now
        ),
        created_at=now,
        give_up_at=now + GIVE_UP_AFTER,
        type=LOW_BALANCE_EVENT_TYPE,
    )


async def publish_changes(
    conn: Connection,
    accounts: Sequence[Account],
    now: datetime,
    *,
    granted: bool = False,
    new_threshold: bool = False,
    counted: Mapping[UUID, Sequence[UUID]] | None = None,
) -> None:
    """The changed accounts' CreditsChanged, and their low-balance webhooks where due.

    `counted`: per company, the generations a batch of usage recorded (see `burn.py`).
    """
    if not accounts:
        return
    decided = []
    for account in accounts:
        alert = low_balance(
            account.balance,
            account.low_balance_threshold,
            account.low_balance_alerted,
            mode=account.mode,
            granted=granted,
            new_threshold=new_threshold,
        )
        decided.append(
            (
                replace(
                    account,
                    low_balance_alerted=alert.alerted,
                    low_balance_alerts=account.low_balance_alerts + int(alert.send),
                ),
                alert.send,
            )
        )
    await store.set_alerted(
        conn,
        [after for (after, _), before in zip(decided, accounts, strict=True) if after != before],
    )
    sending = [account for account, send in decided if send]
    # Where the company's budget webhooks go; an alert with no URL to go to is not kept.
    hooked = await store.with_webhook(conn, [account.company_id for account in sending])
    await webhooks.enqueue(
        conn, [low_balance_delivery(a, now) for a in sending if a.company_id in hooked]
    )
    left = await store.grants_left(conn, [account.company_id for account in accounts])
    await outbox.enqueue_many(
        conn,
        [
            credits_changed(
                account, left[account.company_id], now, (counted or {}).get(account.company_id, ())
            )
            for account in accounts
        ],
    )
