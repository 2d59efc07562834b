from django.contrib import admin

from warehouse.models import (
    ApraRuleSet,
    AuditLogEntry,
    LedgerEntry,
    Payment,
    PaymentDecision,
    PublishedReport,
    Transaction,
)

admin.site.register(
    Transaction,
    list_display=("txn_id", "account", "amount", "booked_on", "status"),
    list_filter=("booked_on", "status"),
)
admin.site.register(LedgerEntry, list_display=("txn_id", "account", "amount", "posted_on"))
admin.site.register(
    Payment, list_display=("payment_id", "payee", "amount", "payee_on_watchlist", "decision")
)
admin.site.register(PublishedReport, list_display=("report_id", "report_date", "created_at"))
admin.site.register(AuditLogEntry, list_display=("step_name", "idempotency_key", "created_at"))
admin.site.register(
    PaymentDecision, list_display=("payment_id", "validator", "decision", "created_at")
)
admin.site.register(
    ApraRuleSet,
    list_display=("version", "large_amount", "note", "created_at"),
    readonly_fields=("version",),
)
