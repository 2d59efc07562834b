"""The demo data warehouse the demo workflows' tools read and write.

It stands in for a customer's systems: transactions, a general ledger, payments, and the
reporting and audit-log sinks. Writes are keyed by the caller's idempotency key (the
tool_use_id), so a repeated tool attempt never applies a side effect twice.
"""

from __future__ import annotations

from django.db import models


class Transaction(models.Model):
    txn_id = models.CharField(max_length=40, unique=True)
    account = models.CharField(max_length=40)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="AUD")
    booked_on = models.DateField(db_index=True)
    # When in the day it was booked (the report's time windows; None: at the day's start).
    booked_at = models.TimeField(null=True, blank=True)
    status = models.CharField(max_length=20)
    counterparty = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True)
    customer_verified = models.BooleanField(default=True)

    class Meta:
        ordering = ["booked_on", "txn_id"]

    def __str__(self) -> str:
        return f"{self.txn_id} {self.amount} {self.booked_on}"


class LedgerEntry(models.Model):
    txn_id = models.CharField(max_length=40, db_index=True)
    account = models.CharField(max_length=40)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    posted_on = models.DateField(db_index=True)

    class Meta:
        ordering = ["posted_on", "txn_id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.txn_id} {self.amount}"


class Payment(models.Model):
    payment_id = models.CharField(max_length=40, unique=True)
    payer_account = models.CharField(max_length=40)
    payee = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="AUD")
    payee_on_watchlist = models.BooleanField(default=False)
    decision = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["payment_id"]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.amount} to {self.payee}"


class PublishedReport(models.Model):
    """A report written to the 'reporting system' by publish_report."""

    report_id = models.CharField(max_length=40, unique=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    report_date = models.DateField()
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.report_id


class AuditLogEntry(models.Model):
    """A line written by the audit_log tool to the customer's own audit system."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    step_name = models.CharField(max_length=100)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "audit log entries"

    def __str__(self) -> str:
        return f"{self.step_name} {self.idempotency_key}"


class PaymentDecision(models.Model):
    """A decision recorded by the payment workflows' validators and manual review."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    payment_id = models.CharField(max_length=40, db_index=True)
    validator = models.CharField(max_length=40)
    decision = models.CharField(max_length=20)
    reasons = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.payment_id} {self.validator}: {self.decision}"


class ApraRuleSet(models.Model):
    """The APRA rules validate_apra applies, as the compliance team keeps them: one row per
    version (the latest is in force). Editing them in the admin saves a new version, so a run
    validated under an older version must validate again before it publishes
    (demo.financial_reporting, ``RerunWhenChanged``)."""

    version = models.PositiveIntegerField(unique=True)
    large_amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        help_text="CPS234-KYC-01: amounts from this size need a verified customer.",
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        verbose_name = "APRA rule set"

    def __str__(self) -> str:
        return f"APRA rules v{self.version}"

    def save(self, *args, **kwargs) -> None:
        # A change is a new version: the version a run validated under stays what it was.
        if self.pk is not None:
            self.pk = None
            self._state.adding = True
        if self._state.adding:
            latest = (
                ApraRuleSet.objects.order_by("-version").values_list("version", flat=True).first()
                or 0
            )
            self.version = latest + 1
        super().save(*args, **kwargs)

    @classmethod
    def in_force(cls) -> ApraRuleSet | None:
        return cls.objects.order_by("-version").first()
