"""What ran, what the models were asked and answered, what the tools did, and who did what.

Payloads are JSONB. Rows are written as things happen and never rewritten after they are
final, so the run page, the ticket page and the audit export all read the same record.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.fields.json import KT

from orchestration.fields import EncryptedJSONField


class JsonbTsvector(Func):
    """``jsonb_to_tsvector('simple', value, '["string", "numeric"]')``: the values, not the keys.

    The 'simple' configuration keeps tokens as written (no stemming, no stop words), so
    ids such as ``TX-20261120-001`` are found exactly. NULL counts as an empty document.
    """

    function = "jsonb_to_tsvector"
    template = (
        "jsonb_to_tsvector('simple'::regconfig, COALESCE(%(expressions)s, '{}'::jsonb), "
        '\'["string", "numeric"]\'::jsonb)'
    )
    output_field = SearchVectorField()


def search_document(*fields: str) -> Func:
    return Func(
        *[JsonbTsvector(F(f)) for f in fields],
        template="(%(expressions)s)",
        arg_joiner=" || ",
        output_field=SearchVectorField(),
    )


class WorkflowVersion(models.Model):
    """A snapshot of everything that decides how a workflow's runs behave (the checkpoint
    taken before every run), and its review state.

    The content (prompt, tools and schemas, limits, models per role, and ``behaviour``: rules,
    examples, validators, guards, preconditions, escalation rules and regulatory trigger, the
    code-defined ones by a digest of their source) never changes: a change of any of it is a
    new row with a new ``content_hash`` (orchestration.workflows.versions). The engine sends
    exactly the prompt and tool definitions stored here, and runs the code whose digests match
    them, so a run can be explained later even after the workflow's code changed.

    The review state changes only through ``orchestration.version_policy`` (and the first
    version of a workflow, which the system approves as its bootstrap)::

        pending -> approved | rejected
        approved: serving (at most one per workflow) <-> not serving (approve, roll back)
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending approval"
        APPROVED = "approved"
        REJECTED = "rejected"

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=40)
    content_hash = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    system_prompt = models.TextField()
    tools = models.JSONField(
        help_text="Tool definitions as sent to the Messages API, with versions."
    )
    input_schema = models.JSONField()
    output_schema = models.JSONField()
    model_roles = models.JSONField(help_text="Model per role.")
    constraints = models.JSONField()
    # Empty for snapshots taken before it existed (they did not cover the code; see
    # orchestration.workflows.versions.LEGACY).
    behaviour = models.JSONField(
        default=dict,
        blank=True,
        help_text="Rules, examples, tool schemas and code digests (validators, guards, escalation rules...).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # The version new runs start on: one per workflow name (the constraint below).
    serving = models.BooleanField(default=False)
    # Who proposed the change (the UI or ``manage.py propose_version --author``): the one
    # person who may not approve it. NULL until someone proposes it (and for the bootstrap).
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["name", "-created_at"]
        indexes = [models.Index(fields=["name", "-created_at"], name="wfversion_name_created")]
        constraints = [
            # New runs of a workflow start on exactly one version (launch asks for it by name).
            models.UniqueConstraint(
                fields=["name"], condition=Q(serving=True), name="wfversion_one_serving_per_name"
            ),
            # Only an approved version serves.
            models.CheckConstraint(
                condition=Q(serving=False) | Q(status="approved"),
                name="wfversion_serving_is_approved",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.content_hash[:8]})"

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]


class RunQuerySet(models.QuerySet):
    def locked(self) -> RunQuerySet:
        """The run's row lock: FOR NO KEY UPDATE, the lock an UPDATE of the run takes. Lockers
        still exclude each other, but rows that reference the run (audit events, model and
        tool calls) can be inserted while it is held. A plain FOR UPDATE blocks those inserts:
        a transaction holding the audit chain's lock and inserting an event of this run would
        wait on the run's holder, who waits for the chain's lock, and Postgres would abort one."""
        return self.select_for_update(no_key=True)


class Run(models.Model):
    """One execution of a workflow version.

    The status only changes through ``orchestration.lifecycle.transition`` (under a row
    lock). Allowed transitions::

        requested -> awaiting_approval | queued | cancelled
        awaiting_approval -> approved | rejected | cancelled
        approved -> queued | cancelled
        queued -> running | cancelled
        running -> succeeded | failed | awaiting_review | awaiting_subagent | halted | cancelled
        awaiting_review -> queued (resume/retry/correct) | succeeded (sign-off) | failed | cancelled
        awaiting_subagent -> queued (its sub-agent runs ended) | failed | cancelled

    A sub-agent's run (orchestration.subagents) has ``parent`` set and ``parent_tool_use_id``:
    the parent's handoff tool_use it answers (one child per tool_use).

    Any state not final -> cancelled through ``orchestration.run_actions.cancel``. A re-run or a
    fork names the run it came from (``origin``, ``origin_kind``, ``fork_turn``).
    """

    class Status(models.TextChoices):
        REQUESTED = "requested"
        AWAITING_APPROVAL = "awaiting_approval", "awaiting approval"
        APPROVED = "approved"
        REJECTED = "rejected"
        QUEUED = "queued"
        RUNNING = "running"
        AWAITING_REVIEW = "awaiting_review", "awaiting review"
        # Parked until the sub-agent runs it handed work to have ended (orchestration.subagents).
        AWAITING_SUBAGENT = "awaiting_subagent", "awaiting sub-agent"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        HALTED = "halted"
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.HALTED, Status.REJECTED, Status.CANCELLED)

    class Origin(models.TextChoices):
        RERUN = "rerun", "re-run"
        FORK = "fork", "fork"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow_version = models.ForeignKey(
        WorkflowVersion, on_delete=models.PROTECT, related_name="runs"
    )
    workflow_name = models.CharField(max_length=100, db_index=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="runs"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    # The handoff tool_use of the parent this run answers ("" for a run that is no sub-agent).
    parent_tool_use_id = models.CharField(max_length=100, blank=True, default="")
    input = models.JSONField()
    options = models.JSONField(
        default=dict, blank=True, help_text="Per-run engine options, e.g. simulator faults."
    )
    # A run started by an evaluation (the evaluation app): its escalations are the case's
    # outcome, closed at once instead of queued for reviewers (reviews.escalation), and its
    # spend is shown apart from production's on the costs page. Set only by launch.start_run.
    is_evaluation = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    estimate_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    estimate = models.JSONField(null=True, blank=True, help_text="The estimate's calculation.")
    cost_usd = models.DecimalField(
        max_digits=20, decimal_places=12, default=Decimal("0")
    )  # exact: never rounded
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    # The spend ceiling (costs.accounting owns it): no model request leaves unless its
    # worst-case cost fits under ceiling_usd - cost_usd - reserved_usd (and its worst-case
    # tokens under ceiling_tokens). NULL means no ceiling was ever set: nothing may be spent.
    ceiling_usd = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    ceiling_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    ceiling_basis = models.CharField(
        max_length=300, blank=True, help_text="Where the ceiling comes from."
    )
    # What the calls in flight may still cost at most (their reservations, settled on charge).
    reserved_usd = models.DecimalField(max_digits=20, decimal_places=12, default=Decimal("0"))
    reserved_tokens = models.PositiveBigIntegerField(default=0)
    # What the run's sub-agent runs (children, grandchildren) spent and hold in flight: their
    # calls count against this run's ceiling too (costs.accounting). cost_usd stays the run's own.
    children_cost_usd = models.DecimalField(max_digits=20, decimal_places=12, default=Decimal("0"))
    children_tokens = models.PositiveBigIntegerField(default=0)
    children_reserved_usd = models.DecimalField(
        max_digits=20, decimal_places=12, default=Decimal("0")
    )
    children_reserved_tokens = models.PositiveBigIntegerField(default=0)
    # A reviewer's note waiting to be given to the model in the next turn.
    pending_note = models.TextField(blank=True)
    # The step that holds the run until this time; see orchestration.engine.claim_step.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    steps_taken = models.PositiveIntegerField(default=0)
    # Re-runs and forks (orchestration.run_actions): the run this one was made from, how, and
    # for a fork the model turn it starts from (turns before it are copied history).
    origin = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived"
    )
    origin_kind = models.CharField(max_length=10, choices=Origin.choices, blank=True)
    fork_turn = models.PositiveIntegerField(null=True, blank=True)
    # NULL, not "", for "no key": the unique constraint below only applies to real keys.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Last time the run was (re)queued; the run timeout counts from here, not from the
    # start, so time spent waiting for a reviewer does not count against it.
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Full-text document over the input and the result, kept by Postgres (a generated column).
    search_vector = models.GeneratedField(
        expression=search_document("input", "result"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A retried "start run" with the same key returns the first run.
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="run_unique_idempotency_key_per_user",
            ),
            # A settlement never gives back more than was reserved (costs.accounting.charge).
            models.CheckConstraint(
                condition=Q(reserved_usd__gte=0), name="run_reserved_usd_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(children_reserved_usd__gte=0), name="run_children_reserved_not_negative"
            ),
            # One sub-agent run per handoff tool_use: a step repeated after a crash finds it.
            models.UniqueConstraint(
                fields=["parent", "parent_tool_use_id"],
                condition=Q(parent__isnull=False),
                name="run_one_child_per_tool_use",
            ),
        ]
        indexes = [
            # The runs list's keyset pagination: ORDER BY (column, id), scanned either way.
            # (created_at, id) also serves the dashboard's recent runs.
            models.Index(fields=["created_at", "id"], name="run_created_id"),
            models.Index(fields=["cost_usd", "id"], name="run_cost_id"),
            models.Index(fields=["workflow_name", "id"], name="run_workflow_id"),
            models.Index(fields=["status", "id"], name="run_status_id"),
            # The runs list filtered by status or by workflow, newest first: without these, a
            # filter that matches few runs walked the whole (created_at, id) index to fill a
            # page (bench/RESULTS.md, "Dashboard pages").
            models.Index(fields=["status", "created_at", "id"], name="run_status_created"),
            models.Index(fields=["workflow_name", "created_at", "id"], name="run_workflow_created"),
            # Full-text search over input and result on the runs list.
            GinIndex(fields=["search_vector"], name="run_search"),
            # The per-user daily start limit and per-user budgets; covering cost_usd so the
            # approval queue's "spend in the last 30 days" per requester is an index-only scan.
            models.Index(
                fields=["requested_by", "created_at"],
                include=["cost_usd"],
                name="run_requester_created",
            ),
            # The reaper's query: running runs whose step lease expired.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="running"),
                name="run_running_lease",
            ),
            # The error-rate alert rule (alerts.rules.run_outcomes): runs that ended in a window.
            models.Index(
                fields=["finished_at"], condition=Q(finished_at__isnull=False), name="run_finished"
            ),
        ]
        permissions = [
            ("start_run", "Can start runs"),
            ("view_all_runs", "Can see every user's runs"),
        ]

    # What the audit chain digests when an event records this run (orchestration.audit).
    # What the chain covers: what was asked and answered, who asked (four eyes reads it), and
    # the spend ceiling (raised only by an audited decision).
    EVIDENCE_FIELDS = ("input", "result", "requested_by", "ceiling_usd", "ceiling_tokens")

    def __str__(self) -> str:
        return f"{self.workflow_name} {str(self.id)[:8]} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    @property
    def tree_cost_usd(self) -> Decimal:
        """The run's own cost plus what its sub-agent runs spent."""
        return self.cost_usd + self.children_cost_usd

    @property
    def latency_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class ModelCall(models.Model):
    """One request to the Messages API, as sent and as answered (or failed).

    ``request_content`` is the user turn this call added to the conversation;
    ``response_content`` the assistant turn it got back (while the call is pending, the part
    streamed so far; for a stream that broke, what had arrived). Replaying them in order rebuilds
    the exact conversation, which is how a step resumes after a crash.
    """

    class Role(models.TextChoices):
        ORCHESTRATOR = "orchestrator"
        SPECIALIST = "specialist"
        VALIDATOR = "validator"
        REVIEWER = "reviewer"
        CLASSIFIER = "classifier"
        FORMATTER = "formatter"

    class Status(models.TextChoices):
        PENDING = "pending"
        OK = "ok"
        ERROR = "error"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="model_calls")
    # A fan-out job's specialist or validator call; ``turn`` is then the job's attempt.
    job = models.ForeignKey(
        "orchestration.FanoutJob",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_calls",
    )
    turn = models.PositiveIntegerField(help_text="Index of the assistant turn in the conversation.")
    attempt = models.PositiveIntegerField(default=1)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ORCHESTRATOR)
    model = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Encrypted at rest when PAYLOAD_ENCRYPTION_KEYS is set (see orchestration.fields).
    # NULL only after the retention purge dropped the bodies (payload_purged_at says when).
    request_content = EncryptedJSONField(null=True)
    response_content = EncryptedJSONField(null=True, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    usage = models.JSONField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=20, decimal_places=12, default=Decimal("0")
    )  # exact: never rounded
    # The worst case this call holds against its run's ceiling until it is charged or released.
    reserved_usd = models.DecimalField(max_digits=20, decimal_places=12, default=Decimal("0"))
    reserved_tokens = models.PositiveBigIntegerField(default=0)
    price = models.ForeignKey(
        "costs.ModelPrice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_batch = models.BooleanField(default=False)
    # Batch-mode runs: the Message Batches API batch this call was submitted in.
    batch_id = models.CharField(max_length=100, blank=True)
    sdk_attempts = models.PositiveSmallIntegerField(
        default=1, help_text="HTTP attempts the SDK made (its own retries included)."
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # Time to the first token of the streamed answer (latency_ms is the total).
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    # History a fork copied from the run it forked (orchestration.run_actions): paid by that
    # run, so a copy carries no cost, tokens or price of its own; ``copied_from`` has them.
    copied = models.BooleanField(default=False)
    copied_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    payload_purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "turn", "attempt"]
        constraints = [
            # Each retry of a turn of the run's own conversation is a new row.
            models.UniqueConstraint(
                fields=["run", "turn", "attempt"],
                condition=Q(job__isnull=True),
                name="modelcall_unique_attempt",
            ),
            # A fan-out job's calls: one row per (role, job attempt, call attempt).
            models.UniqueConstraint(
                fields=["job", "role", "turn", "attempt"],
                condition=Q(job__isnull=False),
                name="modelcall_unique_job_attempt",
            ),
        ]
        indexes = [
            # Spend by period (budgets, the costs page).
            models.Index(fields=["created_at"], name="modelcall_created"),
            # Batch calls still waiting for their batch (beat polls these).
            models.Index(
                fields=["batch_id"],
                condition=Q(status="pending") & ~Q(batch_id=""),
                name="modelcall_pending_batch",
            ),
            # The roll-up fold (insight.rollups): calls that finished since the last fold.
            models.Index(fields=["finished_at"], name="modelcall_finished"),
        ]

    # What the audit chain digests when an event records this call (orchestration.audit);
    # the retention purge may empty the contents (a payload.purged event says when).
    EVIDENCE_FIELDS = ("model", "request_content", "response_content", "stop_reason")
    PURGEABLE_FIELDS = ("request_content", "response_content")

    def __str__(self) -> str:
        return f"{self.model} turn {self.turn} attempt {self.attempt} ({self.status})"

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    def _blocks(self) -> list[dict]:
        # Not a list: purged (None) or a placeholder for a body that cannot be decrypted.
        content = self.response_content
        return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []

    @property
    def text(self) -> str:
        return "\n".join(b.get("text", "") for b in self._blocks() if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict]:
        return [b for b in self._blocks() if b.get("type") == "tool_use"]


class ToolCall(models.Model):
    """One attempt at executing a tool the model asked for.

    Several attempts of one ``tool_use_id`` may exist; the one with ``settled=True`` is what
    the model was answered with. Tools get ``tool_use_id`` as their idempotency key, so a
    side effect is applied once even when an attempt is interrupted and repeated.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"
        TIMEOUT = "timeout"
        INVALID_OUTPUT = "invalid_output", "invalid output"
        UNKNOWN_TOOL = "unknown_tool", "unknown tool"
        REJECTED = "rejected"
        CORRECTED = "corrected", "corrected by reviewer"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_calls")
    model_call = models.ForeignKey(ModelCall, on_delete=models.CASCADE, related_name="tool_calls")
    tool_use_id = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    tool_version = models.CharField(max_length=40, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    settled = models.BooleanField(default=False)
    # Encrypted at rest when PAYLOAD_ENCRYPTION_KEYS is set (see orchestration.privacy).
    # NULL only after the retention purge dropped the bodies (payload_purged_at says when).
    input = EncryptedJSONField(null=True)
    output = EncryptedJSONField(null=True, blank=True)
    raw_output = EncryptedJSONField(
        null=True, blank=True, help_text="What the tool returned before it was cut to its schema."
    )
    validation_errors = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # History a fork copied from the run it forked (orchestration.run_actions): never executed
    # again in the fork; ``copied_from`` is the original attempt.
    copied = models.BooleanField(default=False)
    copied_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    payload_purged_at = models.DateTimeField(null=True, blank=True)
    # Full-text document over the payloads (only an envelope when they are encrypted).
    search_vector = models.GeneratedField(
        expression=search_document("input", "output", "raw_output"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["run", "created_at", "attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "tool_use_id", "attempt"], name="toolcall_unique_attempt"
            ),
            # The model is answered once per tool_use.
            models.UniqueConstraint(
                fields=["run", "tool_use_id"],
                condition=Q(settled=True),
                name="toolcall_one_settled_per_tool_use",
            ),
        ]
        indexes = [
            # The runs list's search: runs whose tool payloads contain the words.
            GinIndex(fields=["search_vector"], name="toolcall_search"),
            # The roll-up fold (insight.rollups): attempts that finished since the last fold,
            # and an hour's attempts when the fold recomputes that hour.
            models.Index(fields=["finished_at"], name="toolcall_finished"),
            models.Index(fields=["created_at"], name="toolcall_created"),
        ]

    # What the audit chain digests when an event records this attempt (orchestration.audit).
    # ``settled`` is not: a reviewer's retry clears it after the event.
    EVIDENCE_FIELDS = ("name", "status", "input", "output", "raw_output")
    PURGEABLE_FIELDS = ("input", "output", "raw_output")

    def __str__(self) -> str:
        return f"{self.name} attempt {self.attempt} ({self.status})"

    @property
    def is_error_result(self) -> bool:
        return self.status not in (self.Status.OK, self.Status.CORRECTED)


class AuditEvent(models.Model):
    """Append-only record of one thing that happened, chained by hash.

    Two chains: the run's own (``run_seq``, ``run_prev_hash``: the hash of the run's previous
    event), written at append time under the run's head row lock, and the global one
    (``seq``, ``prev_hash``, ``chain_hash``), written afterwards by the sequencer
    (``orchestration.audit.anchor``): ``seq`` is null until the event is anchored. ``hash``
    covers the run link and ``payload_digest`` (not the payload itself), so the retention
    purge can drop the payload and the chain still verifies. ``format`` 1: events appended
    before per-run chains (their ``hash`` covers the global link too). See
    ``orchestration.audit`` and docs/architecture.md, "Chain format".
    """

    # Position in the global chain; null until the sequencer anchors the event.
    seq = models.BigIntegerField(unique=True, null=True, blank=True)
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    kind = models.CharField(max_length=60)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="Username, or 'engine' / 'system'.")
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    # The global link: chain_hash of event seq - 1 ("" until anchored).
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64)
    # sha256(prev_hash + canonical {seq, hash}) (format 2); equal to hash for format 1.
    chain_hash = models.CharField(max_length=64, blank=True, default="")
    format = models.PositiveSmallIntegerField(
        default=2, help_text="Chain format: 1 legacy, 2 per-run chains."
    )
    run_seq = models.PositiveIntegerField(
        null=True, blank=True, help_text="Position in the run's chain."
    )
    run_prev_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the run's previous event."
    )
    payload_digest = models.CharField(max_length=64, help_text="sha256 of the canonical payload.")
    payload_purged_at = models.DateTimeField(null=True, blank=True)
    # HMAC of ``hash`` with the signing key named by ``key_id`` (AUDIT_SIGNING_KEY): a forger
    # with database access but not the key cannot produce it.
    key_id = models.CharField(max_length=16, blank=True, default="")
    mac = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["seq", "id"]
        constraints = [
            # One position per event in a run's chain; a forged insert cannot reuse one.
            models.UniqueConstraint(
                fields=["run", "run_seq"],
                condition=Q(run__isnull=False),
                name="auditevent_unique_run_seq",
            ),
        ]
        indexes = [
            models.Index(fields=["run", "seq"], name="auditevent_run_seq"),
            # The sequencer's backlog: events not yet anchored, in append order.
            models.Index(
                fields=["id"], condition=Q(seq__isnull=True), name="auditevent_unanchored"
            ),
            # The audit trail page (orchestration.trail_search): newest first (id order), a page
            # at a time, filtered by kind or by actor, scanned backwards from a keyset cursor.
            models.Index(fields=["kind", "id"], name="auditevent_kind_id"),
            models.Index(fields=["actor_label", "id"], name="auditevent_actor_id"),
            # Its time range.
            models.Index(fields=["created_at"], name="auditevent_created"),
            # One actor's events of one kind, newest first: the trail filtered on both (without
            # it Postgres walks the id index back through every event when few match), and what
            # one person did in a period (orchestration.person_activity; created_at included so
            # the period is checked in the index).
            models.Index(
                fields=["actor_label", "kind", "id"],
                include=["created_at"],
                name="auditevent_actor_kind_id",
            ),
            # The events that concern one ticket or one approval request (their payload
            # names it: {"ticket": 12}, {"request": 7}).
            models.Index(
                KT("payload__ticket"),
                "id",
                condition=Q(payload__has_key="ticket"),
                name="auditevent_ticket_id",
            ),
            models.Index(
                KT("payload__request"),
                "id",
                condition=Q(payload__has_key="request"),
                name="auditevent_request_id",
            ),
            # Full-text search over the (redacted) payloads' values.
            GinIndex(JsonbTsvector(F("payload")), name="auditevent_payload_search"),
        ]

    def __str__(self) -> str:
        where = (
            f"#{self.seq}"
            if self.seq is not None
            else f"(run event {self.run_seq}, not yet anchored)"
        )
        return f"{where} {self.kind} by {self.actor_label}"


class RunAuditHead(models.Model):
    """The head of a run's audit chain: its last event's position and hash, signed.

    Written by ``orchestration.audit.record`` with every event of the run, and by nothing
    else: the append locks this row (``SELECT ... FOR UPDATE``), so appends of one run take
    turns and appends of different runs never wait for each other. ``mac`` is
    HMAC(AUDIT_SIGNING_KEY, "head:<run>:<run_seq>:<hash>"): a head moved back to an earlier
    event needs that earlier state's signature. A run's trailing events deleted leave it
    pointing at an event that is not there (``verify_run``). A row of its own rather than
    columns on Run: callers lock the run's row in any order, and the narrow update costs a
    fraction of one on Run, whose row carries a generated search vector and ten indexes.
    """

    run = models.OneToOneField(
        Run, primary_key=True, on_delete=models.PROTECT, related_name="audit_head"
    )
    run_seq = models.PositiveIntegerField()
    hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16, blank=True, default="")
    mac = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"head of {self.run_id}: event {self.run_seq}"


class AuditCheckpoint(models.Model):
    """A signed copy of the global chain's head: (seq, chain_hash) with an HMAC under AUDIT_SIGNING_KEY.

    Written by the sequencer's beat task every AUDIT_ANCHOR_SECONDS (when the head moved) and
    by every successful ``verify_audit``. Verification checks every checkpoint's MAC and that
    the event at its ``seq`` still has that ``chain_hash``: events cut from the end of the chain, or a chain
    rewritten and re-hashed in SQL, no longer match a checkpoint signed before.
    """

    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["seq", "id"]
        # Verification walks checkpoints in chain order; the run page reads the latest one.
        indexes = [models.Index(fields=["seq"], name="auditcheckpoint_seq")]

    def __str__(self) -> str:
        return f"checkpoint #{self.pk} at event #{self.seq}"


# Fan-out models live in their own module of this app (orchestration.fanout.models).
from orchestration.fanout.models import Fanout, FanoutJob  # noqa: E402

__all__ = [
    "AuditCheckpoint",
    "AuditEvent",
    "RunAuditHead",
    "Fanout",
    "FanoutJob",
    "ModelCall",
    "Run",
    "ToolCall",
    "WorkflowVersion",
]
