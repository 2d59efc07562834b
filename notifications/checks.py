"""System checks of the notifications app."""

from __future__ import annotations

import os
from typing import Any

from django.core.checks import Warning as CheckWarning


def legacy_escalation_webhook(**kwargs: Any) -> list[CheckWarning]:
    """ESCALATION_WEBHOOK_URL (an unsigned webhook for tickets) is no longer read: say so
    rather than let its notices stop without a word."""
    if not os.environ.get("ESCALATION_WEBHOOK_URL"):
        return []
    return [
        CheckWarning(
            "ESCALATION_WEBHOOK_URL is set but no longer read: ticket notices (opened, overdue, "
            "escalated) go only to signed webhook endpoints.",
            hint="Add a webhook endpoint in the admin (Notifications > Webhook endpoints) "
            "subscribed to ticket.opened, ticket.overdue and ticket.escalated, then unset it.",
            id="notifications.W001",
        )
    ]
