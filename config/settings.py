"""Countersign settings, read from the environment (12-factor) through django-environ.

Debug is off unless DJANGO_DEBUG says otherwise: `make run`, `make test` and the other make
targets turn it on (scripts/with-services.sh), pytest through tests/settings.py. With debug off
Countersign refuses to start without a real SECRET_KEY, and /metrics needs METRICS_TOKEN.
Every other knob has a default that works on a fresh machine.
"""

from __future__ import annotations

import re
import secrets
import sys
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Commands that only read the code (no request served, nothing signed, sealed or stored) run
# on a fresh checkout without production secrets, e.g. `manage.py makemigrations --check` in
# CI: they get throwaway keys that live only as long as the process.
_CODE_ONLY_COMMANDS = {"makemigrations", "sqlmigrate", "help", "version"}
_CODE_ONLY = (
    Path(sys.argv[0]).name == "manage.py" and (sys.argv[1:2] or ["help"])[0] in _CODE_ONLY_COMMANDS
)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me"  # noqa: S105
_THROWAWAY = secrets.token_urlsafe(48) if _CODE_ONLY else ""
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET if DEBUG else _THROWAWAY)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when DJANGO_DEBUG is false (its default). For a development "
        "machine, set DJANGO_DEBUG=1 (make run and make test do)."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "orchestration",
    "reviews",
    "costs",
    "warehouse",
    "simulator",
    "demo",
    "notifications",
    "alerts",
    "django_celery_beat",
    "schedules",
    "api",
    "ops",
    "insight",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads the body or the query: oversized bodies (413) and query strings
    # with NUL or too long (400), answered as JSON under /api/ (config/request_limits.py).
    "config.request_limits.RequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orchestration.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default="postgres://postgres@127.0.0.1:54329/countersign"
    ),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("Countersign needs PostgreSQL (DATABASE_URL=postgres://...).")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:63790/0")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# django-axes first: it counts failed logins (page and admin) and refuses a locked-out one
# before the password is even checked. See docs/security.md.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
# Hours a (username, IP address) pair stays locked after the limit; the lock lifts by itself.
AXES_COOLOFF_TIME = env.float("LOGIN_LOCKOUT_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured("LOGIN_FAILURE_LIMIT must be at least 1.")

# Content-Security-Policy (django-csp): no inline script or style anywhere, nothing from
# another origin, never framed. Behaviour lives in static/js, htmx's own indicator <style> is
# off (templates/base.html: htmx-config), and Chart.js styles its canvas through the CSSOM.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# Where django.core.mail.backends.filebased.EmailBackend writes (one file per message).
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".dev" / "mail"))

# --- Celery -------------------------------------------------------------------------
# Why these values: see docs/architecture.md "Durability". In short, one bounded step per
# task, acknowledged only after it ran, so a worker killed mid-step has its message
# redelivered, and every step is idempotent.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# kombu's Redis transport with one fix: a worker survives the broker going away (config/broker.py).
CELERY_BROKER_TRANSPORT = "config.broker:Transport"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {"orchestration.tasks.advance_run": {"queue": "llm"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Beat reads its schedule from the database (django-celery-beat): the entries of
# CELERY_BEAT_SCHEDULE are written there when beat starts, and each Countersign schedule owns
# a row of its own (schedules.service). schedules.beat explains the two changes it makes.
CELERY_BEAT_SCHEDULER = "schedules.beat:Scheduler"
CELERY_BEAT_SCHEDULE = {
    "reap-stalled-runs": {
        "task": "orchestration.tasks.reap_stalled_runs",
        "schedule": env.float("REAPER_INTERVAL_SECONDS", default=30.0),
    },
    "escalate-overdue-tickets": {
        "task": "reviews.tasks.escalate_overdue_tickets",
        "schedule": env.float("OVERDUE_CHECK_SECONDS", default=60.0),
    },
    "expire-approval-requests": {
        "task": "reviews.tasks.expire_approval_requests",
        "schedule": env.float("APPROVAL_EXPIRY_CHECK_SECONDS", default=60.0),
    },
    "poll-message-batches": {
        "task": "orchestration.tasks.poll_batches",
        "schedule": env.float("BATCH_POLL_SECONDS", default=30.0),
    },
}

# --- Orchestration engine -----------------------------------------------------------
LLM_BACKEND = env.str("LLM_BACKEND", default="simulated")
if LLM_BACKEND not in ("simulated", "anthropic"):
    raise ImproperlyConfigured("LLM_BACKEND must be 'simulated' or 'anthropic'.")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
if LLM_BACKEND == "anthropic" and not ANTHROPIC_API_KEY:
    raise ImproperlyConfigured("LLM_BACKEND=anthropic needs ANTHROPIC_API_KEY.")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
# Seconds the SDK waits for one HTTP attempt, and how many times the SDK itself retries
# 408/409/429/5xx (with its own backoff and retry-after handling) before we see an error.
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=120.0)
LLM_SDK_MAX_RETRIES = env.int("LLM_SDK_MAX_RETRIES", default=2)
# On top of the SDK's retries, how many times a step re-attempts a failed model call
# (each re-attempt is a persisted ModelCall) before the run escalates.
LLM_STEP_MAX_ATTEMPTS = env.int("LLM_STEP_MAX_ATTEMPTS", default=3)
LLM_BACKOFF_BASE_SECONDS = env.float("LLM_BACKOFF_BASE_SECONDS", default=2.0)
LLM_BACKOFF_MAX_SECONDS = env.float("LLM_BACKOFF_MAX_SECONDS", default=60.0)
TOOL_BACKOFF_BASE_SECONDS = env.float("TOOL_BACKOFF_BASE_SECONDS", default=0.5)
# A step holds a lease on its run; a run whose lease expired is re-queued by the reaper.
# Longer than the task's hard time limit, so a reaped step never overlaps a live one.
RUN_STEP_LEASE_SECONDS = env.int("RUN_STEP_LEASE_SECONDS", default=900)
# A step task goes on with the run's next step, holding the lease, for up to this long before
# it hands the run back to the queue (other runs get their turn); a run that must wait
# (backoff, review, batch) is handed back at once. 0: one step per task.
ENGINE_TASK_SLICE_SECONDS = env.float("ENGINE_TASK_SLICE_SECONDS", default=10.0)
# While a model call streams, the answer so far is written to its pending row this often (the
# run page shows it). 0: never (only the final answer is written).
LLM_STREAM_PERSIST_SECONDS = env.float("LLM_STREAM_PERSIST_SECONDS", default=0.5)

SIMULATOR = {
    "latency_scale": env.float("SIMULATOR_LATENCY_SCALE", default=1.0),
    "fixed_latency_seconds": env.float("SIMULATOR_FIXED_LATENCY_SECONDS", default=0.0),
    "retry_after_seconds": env.float("SIMULATOR_RETRY_AFTER_SECONDS", default=1.0),
    "batch_seconds": env.float("SIMULATOR_BATCH_SECONDS", default=5.0),
    "faults": env.json("SIMULATOR_FAULTS", default=[]),
    "seed": env.int("SIMULATOR_SEED", default=None),
    "state_url": env.str("SIMULATOR_STATE_URL", default=REDIS_URL),
}
SIMULATOR_POLICY_RESOLVER = "orchestration.workflows.registry.policy_for"
# Modules that declare workflows (imported at start-up); extra ones are comma-separated.
WORKFLOW_MODULES = [
    "demo.financial_reporting",
    "demo.payment_approval",
    "demo.routing",
    "demo.security_scan",
    "demo.ad_variants",
    "demo.fx_rates",
    *env.list("COUNTERSIGN_EXTRA_WORKFLOWS", default=[]),
]

# --- Fan-out (enterprise mode; see docs/architecture.md "Fan-out") ------------------------
# Specialist and validator calls run on the "fanout" queue, served by a threads-pool worker
# (Procfile: fanout), so 50 calls really wait in parallel in one process.
CELERY_TASK_ROUTES["orchestration.tasks.run_fanout_job"] = {"queue": "fanout"}
CELERY_BEAT_SCHEDULE["reap-fanout-jobs"] = {
    "task": "orchestration.tasks.reap_fanout_jobs",
    "schedule": env.float(
        "FANOUT_REAPER_INTERVAL_SECONDS", default=env.float("REAPER_INTERVAL_SECONDS", default=30.0)
    ),
}
# Specialist/validator calls in flight at once, per run and across every run and worker (a
# lease-based Redis semaphore, so a SIGKILLed worker's slot comes back after FANOUT_SLOT_LEASE_SECONDS).
FANOUT_PER_RUN_CONCURRENCY = env.int("FANOUT_PER_RUN_CONCURRENCY", default=50)
FANOUT_GLOBAL_CONCURRENCY = env.int("FANOUT_GLOBAL_CONCURRENCY", default=50)
FANOUT_SLOT_URL = env.str("FANOUT_SLOT_URL", default=REDIS_URL)
FANOUT_SLOT_KEY = env.str("FANOUT_SLOT_KEY", default="countersign:fanout:slots")
# A job's lease: renewed before each of its model calls; a job whose lease expired is re-run
# by the reaper. Longer than one model call can take (timeout x SDK attempts).
FANOUT_JOB_LEASE_SECONDS = env.int(
    "FANOUT_JOB_LEASE_SECONDS", default=int(LLM_TIMEOUT_SECONDS * (LLM_SDK_MAX_RETRIES + 1)) + 30
)
# How long a job waits for a global slot before handing its thread back and re-queueing.
FANOUT_SLOT_WAIT_SECONDS = env.float("FANOUT_SLOT_WAIT_SECONDS", default=10.0)
FANOUT_SLOT_LEASE_SECONDS = env.int("FANOUT_SLOT_LEASE_SECONDS", default=FANOUT_JOB_LEASE_SECONDS)
# A job task that settles its job goes straight on with the job that freed slot was given (no
# trip through the broker), for at most this long; then the thread goes back to the pool, so
# other runs' jobs queued meanwhile get their turn. 0: every job is a task of its own.
FANOUT_JOB_CHAIN_SECONDS = env.float("FANOUT_JOB_CHAIN_SECONDS", default=30.0)
# The GIL switch interval of a threads-pool worker (config/celery.py; Python's default is
# 0.005 s). 0 keeps Python's.
FANOUT_THREADS_SWITCH_INTERVAL = env.float("FANOUT_THREADS_SWITCH_INTERVAL", default=0.0005)
# Default failure threshold (a workflow may set its own): halt when failed jobs exceed it.
FANOUT_FAILURE_THRESHOLD = env.float("FANOUT_FAILURE_THRESHOLD", default=0.20)
# Per-run JSONL artifacts: every specialist output, written before anything reads it.
ARTIFACTS_DIR = Path(env.str("ARTIFACTS_DIR", default=str(BASE_DIR / ".dev" / "artifacts")))
for _name in (
    "FANOUT_PER_RUN_CONCURRENCY",
    "FANOUT_GLOBAL_CONCURRENCY",
    "FANOUT_JOB_LEASE_SECONDS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1.")
if not 0 <= FANOUT_THREADS_SWITCH_INTERVAL <= 0.1:
    raise ImproperlyConfigured(
        "FANOUT_THREADS_SWITCH_INTERVAL must be between 0 (Python's default) and 0.1 seconds."
    )
if not 0 <= FANOUT_FAILURE_THRESHOLD < 1:
    raise ImproperlyConfigured("FANOUT_FAILURE_THRESHOLD must be a fraction in [0, 1), e.g. 0.2.")

# --- Sub-agents (orchestration.subagents; docs/workflows.md "Sub-agents") -------------------
# How deep a tree of sub-agent runs may grow (a top-level run is depth 0, its sub-agents 1),
# and the most sub-agent runs any one run may start, whatever a workflow declares.
SUBAGENT_MAX_DEPTH = env.int("SUBAGENT_MAX_DEPTH", default=2)
SUBAGENT_MAX_CHILDREN = env.int("SUBAGENT_MAX_CHILDREN", default=10)
if SUBAGENT_MAX_DEPTH < 1 or SUBAGENT_MAX_CHILDREN < 1:
    raise ImproperlyConfigured("SUBAGENT_MAX_DEPTH and SUBAGENT_MAX_CHILDREN must be at least 1.")

# --- Costs and approvals --------------------------------------------------------------
APPROVAL_THRESHOLD_USD = Decimal(env.str("APPROVAL_THRESHOLD_USD", default="20.00"))
# A pending approval request expires (the run is cancelled) after this many hours.
APPROVAL_EXPIRY_HOURS = env.float("APPROVAL_EXPIRY_HOURS", default=24)
# The spend ceiling stored on every run (costs.accounting): an approved run may spend its
# approved estimate plus this fraction (a run that needed no approval: the threshold), never
# more than its workflow's max_cost_usd, until a manager raises it.
APPROVAL_OVERRUN_FRACTION = Decimal(env.str("APPROVAL_OVERRUN_FRACTION", default="0.25"))
# The most a manager may add to one run's ceiling at a time (dollars, tokens).
CEILING_MAX_RAISE_USD = Decimal(env.str("CEILING_MAX_RAISE_USD", default="1000.00"))
CEILING_MAX_RAISE_TOKENS = env.int("CEILING_MAX_RAISE_TOKENS", default=50_000_000)
# Batch-mode runs (half price, not real time) may take this long in all before timing out.
BATCH_RUN_TIMEOUT_SECONDS = env.float("BATCH_RUN_TIMEOUT_SECONDS", default=26 * 3600)
# How many runs one user may start in any 24 hours (page, command and API alike).
RUNS_PER_USER_PER_DAY = env.int("RUNS_PER_USER_PER_DAY", default=100)
# Price and budget changes (costs.changes): superusers only, and in force no sooner than this
# many minutes after they are made, so a change is seen (audit trail, admin) before it counts.
COST_CHANGE_MIN_DELAY_MINUTES = env.int("COST_CHANGE_MIN_DELAY_MINUTES", default=60)
if COST_CHANGE_MIN_DELAY_MINUTES < 1:
    raise ImproperlyConfigured("COST_CHANGE_MIN_DELAY_MINUTES must be at least 1.")
# Each process keeps the price rows it read for this long (costs.pricing.price_for): less
# than the delay before a price change takes effect, so a cached price is never stale.
PRICE_CACHE_SECONDS = env.int("PRICE_CACHE_SECONDS", default=30)
if not 0 <= PRICE_CACHE_SECONDS < COST_CHANGE_MIN_DELAY_MINUTES * 60:
    raise ImproperlyConfigured(
        "PRICE_CACHE_SECONDS must be between 0 and COST_CHANGE_MIN_DELAY_MINUTES x 60."
    )
# payment_approval demo: approving a payment over this needs a reviewer's sign-off.
PAYMENT_SIGNOFF_AMOUNT = Decimal(env.str("PAYMENT_SIGNOFF_AMOUNT", default="250000"))

# --- Escalations --------------------------------------------------------------------------
# Who is emailed on a new ticket (default: every reviewer and manager with an email address).
# Webhooks are the admin's signed webhook endpoints (the old unsigned ESCALATION_WEBHOOK_URL is
# no longer read; notifications.checks warns if it is still set). Escalation spikes are an
# alert rule (alerts.rules, thresholds in the admin).
ESCALATION_EMAILS = env.list("ESCALATION_EMAILS", default=[])
# Per-reason priority and due time, e.g. {"ambiguity": {"priority": 2, "due_minutes": 120}}: read
# once, by migration reviews/0007, to seed the SLA targets; after that they are edited in the
# admin (Reviews > SLA targets).
ESCALATION_SLA = env.json("ESCALATION_SLA", default={})
# Overdue tickets (reviews.sla): a notice every SLA_REMINDER_MINUTES while a ticket stays
# overdue; a P1 ticket still open SLA_P1_GRACE_MINUTES after its due time goes to the managers.
SLA_REMINDER_MINUTES = env.int("SLA_REMINDER_MINUTES", default=60)
SLA_P1_GRACE_MINUTES = env.int("SLA_P1_GRACE_MINUTES", default=30)
if SLA_REMINDER_MINUTES < 1 or SLA_P1_GRACE_MINUTES < 0:
    raise ImproperlyConfigured(
        "SLA_REMINDER_MINUTES must be at least 1 and SLA_P1_GRACE_MINUTES at least 0."
    )
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="countersign@localhost")

# --- Alerts and notifications (docs/operations.md "Alerts" and "Notifications") ---------------
# How often beat evaluates the alert rules (alerts.tasks.evaluate_alerts).
ALERTS_EVALUATE_SECONDS = env.int("ALERTS_EVALUATE_SECONDS", default=30)
# Signed webhooks: the timeout of one attempt, how many attempts in all, and the backoff
# (base x 2^(attempt-1), capped, plus up to 10% jitter).
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_BACKOFF_BASE_SECONDS = env.float("WEBHOOK_BACKOFF_BASE_SECONDS", default=10.0)
WEBHOOK_BACKOFF_MAX_SECONDS = env.float("WEBHOOK_BACKOFF_MAX_SECONDS", default=3600.0)
for _name in ("ALERTS_EVALUATE_SECONDS", "WEBHOOK_MAX_ATTEMPTS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1.")
CELERY_BEAT_SCHEDULE["evaluate-alerts"] = {
    "task": "alerts.tasks.evaluate_alerts",
    "schedule": float(ALERTS_EVALUATE_SECONDS),
}
CELERY_BEAT_SCHEDULE["send-due-webhooks"] = {
    "task": "notifications.tasks.send_due_webhooks",
    "schedule": 60.0,
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}
# The run page's live poll re-hashes a run's whole audit chain at most this often; in
# between it checks only the events appended since (orchestration.audit.verify_run_live).
# The page itself always checks the whole chain. 0: the poll does too.
AUDIT_LIVE_FULL_CHECK_SECONDS = env.int("AUDIT_LIVE_FULL_CHECK_SECONDS", default=60)
if AUDIT_LIVE_FULL_CHECK_SECONDS < 0:
    raise ImproperlyConfigured("AUDIT_LIVE_FULL_CHECK_SECONDS must be 0 or more.")

# HMAC keys that sign the audit chain (every event, and the checkpoints of its head), held
# outside the database: comma-separated, the first signs, every one verifies (rotation: put
# the new key first and keep the old ones while events they signed must verify). Each key
# is at least 32 characters; a signature names its key by a fingerprint (docs/operations.md).
_DEV_AUDIT_KEY = "dev-only-insecure-audit-signing-key-change-me"  # noqa: S105
AUDIT_SIGNING_KEY = env.list(
    "AUDIT_SIGNING_KEY", default=[_DEV_AUDIT_KEY] if DEBUG else [_THROWAWAY] if _CODE_ONLY else []
)
if not AUDIT_SIGNING_KEY:
    raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be set when DJANGO_DEBUG is false.")
if any(len(key) < 32 for key in AUDIT_SIGNING_KEY):
    raise ImproperlyConfigured("Each AUDIT_SIGNING_KEY must be at least 32 characters long.")
# The approval queue's per-requester spend (costs.requester_spend): beat rebuilds the daily
# roll-up of complete days this often; today is always read live.
REQUESTER_SPEND_REFRESH_SECONDS = env.float("REQUESTER_SPEND_REFRESH_SECONDS", default=600.0)
if REQUESTER_SPEND_REFRESH_SECONDS <= 0:
    raise ImproperlyConfigured("REQUESTER_SPEND_REFRESH_SECONDS must be more than 0.")
CELERY_BEAT_SCHEDULE["refresh-requester-spend"] = {
    "task": "costs.tasks.refresh_requester_spend",
    "schedule": REQUESTER_SPEND_REFRESH_SECONDS,
}
# The sequencer: beat anchors the events appended since its last pass into the global chain
# this often (then signs a checkpoint of the new head), AUDIT_ANCHOR_BATCH events per
# transaction. Until then an event is verified in its run's chain only (docs/architecture.md).
AUDIT_ANCHOR_SECONDS = env.float("AUDIT_ANCHOR_SECONDS", default=2.0)
if AUDIT_ANCHOR_SECONDS <= 0:
    raise ImproperlyConfigured("AUDIT_ANCHOR_SECONDS must be more than 0.")
AUDIT_ANCHOR_BATCH = env.int("AUDIT_ANCHOR_BATCH", default=5000)
if AUDIT_ANCHOR_BATCH < 1:
    raise ImproperlyConfigured("AUDIT_ANCHOR_BATCH must be 1 or more.")
CELERY_BEAT_SCHEDULE["sign-audit-head"] = {
    "task": "orchestration.tasks.sign_audit_head",
    "schedule": AUDIT_ANCHOR_SECONDS,
    # A pass that has not started by the next one is worthless: do not let them pile up.
    "options": {"expires": AUDIT_ANCHOR_SECONDS},
}

DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="demo")

# --- Audit, privacy and retention ------------------------------------------------------
# Redaction applied to audit payloads (before hashing), exports, downloads and log lines:
# builtin pattern names (email, card, phone; empty to turn them off) plus custom regexes,
# e.g. REDACT_CUSTOM_PATTERNS='{"tfn": "\\b\\d{3} \\d{3} \\d{3}\\b"}'.
REDACT_PATTERNS = env.list("REDACT_PATTERNS", default=["email", "card", "phone"])
REDACT_CUSTOM_PATTERNS = env.json("REDACT_CUSTOM_PATTERNS", default={})
# Optional encryption at rest of tool call inputs and outputs: comma-separated Fernet keys,
# the first encrypts, every one decrypts (rotation). Empty: stored as plain JSONB.
PAYLOAD_ENCRYPTION_KEYS = env.list("PAYLOAD_ENCRYPTION_KEYS", default=[])
# The purge drops payload bodies of finished runs older than this (the hash chain stays valid).
PAYLOAD_RETENTION_DAYS = env.int("PAYLOAD_RETENTION_DAYS", default=90)
if PAYLOAD_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("PAYLOAD_RETENTION_DAYS must be at least 1.")
CELERY_BEAT_SCHEDULE["purge-old-payloads"] = {
    "task": "orchestration.tasks.purge_old_payloads",
    "schedule": env.float("PURGE_INTERVAL_SECONDS", default=6 * 3600.0),
}

# json (one object per line, with run_id/step/task fields; the default in production) or text.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'json' or 'text'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "ops.logs.ContextFilter"},
        "redact": {"()": "orchestration.privacy.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "ops.logs.JsonFormatter"},
        "text": {"()": "ops.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes logs every successful sign-in at INFO; its failures and lockouts are WARNING.
    "loggers": {
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- JSON API and operations (api, ops) ------------------------------------------------------
# /healthz: checks time out after this; a queue whose last heartbeat is older than the max age
# is reported down. Beat sends ops.tasks.heartbeat to each queue every interval.
HEALTHZ_TIMEOUT_SECONDS = env.float("HEALTHZ_TIMEOUT_SECONDS", default=2.0)
HEALTHZ_WORKER_QUEUES = env.list("HEALTHZ_WORKER_QUEUES", default=["celery", "llm", "fanout"])
HEARTBEAT_INTERVAL_SECONDS = env.float("HEARTBEAT_INTERVAL_SECONDS", default=30.0)
HEALTHZ_HEARTBEAT_MAX_AGE_SECONDS = env.int("HEALTHZ_HEARTBEAT_MAX_AGE_SECONDS", default=120)
for _queue in HEALTHZ_WORKER_QUEUES:
    CELERY_BEAT_SCHEDULE[f"heartbeat-{_queue}"] = {
        "task": "ops.tasks.heartbeat",
        "schedule": HEARTBEAT_INTERVAL_SECONDS,
        "args": (_queue,),
        # An undelivered heartbeat is worthless once the next one is due: do not let them pile up.
        "options": {"queue": _queue, "expires": HEARTBEAT_INTERVAL_SECONDS},
    }
# /metrics: with a token, scrapers send "Authorization: Bearer <token>". Without one, only
# loopback clients and only with debug on; in production (debug off) it then answers 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# API tokens: the expiry a new token gets unless its owner picks another, and the longest allowed.
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)
API_TOKEN_MAX_DAYS = env.int("API_TOKEN_MAX_DAYS", default=365)
if not 1 <= API_TOKEN_DEFAULT_DAYS <= API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured("API_TOKEN_DEFAULT_DAYS must be between 1 and API_TOKEN_MAX_DAYS.")
# JSON API requests per token (django-ratelimit, counted in the default cache, i.e. Redis):
# "<count>/<s|m|h|d>", e.g. 120/m. Past it: 429 with Retry-After until the window ends.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="120/m")
if not re.fullmatch(r"[1-9][0-9]*/[0-9]*[smhd]", API_RATE_LIMIT):
    raise ImproperlyConfigured("API_RATE_LIMIT must look like 120/m (count/s, m, h or d).")
# Not in INSTALLED_APPS: only its get_usage() is used, and its system check would warn about
# Django's own RedisCache, which is as atomic (INCR) as the django-redis it lists.
RATELIMIT_USE_CACHE = "default"
# With the cache (Redis) unreachable, serve the request rather than refuse every API call.
RATELIMIT_FAIL_OPEN = env.bool("API_RATE_LIMIT_FAIL_OPEN", default=True)

# --- Operations insight (insight: roll-ups, the operations page, the daily digest) ------------
# Beat folds new rows into the roll-ups this often; /metrics and the operations page are as
# fresh as the last fold. The lag: each fold looks again at rows finished this long before the
# previous fold (rows committed late, clocks behind); longer than any step's transaction.
ROLLUP_FOLD_SECONDS = env.float("ROLLUP_FOLD_SECONDS", default=60.0)
ROLLUP_LAG_SECONDS = env.int("ROLLUP_LAG_SECONDS", default=900)
if ROLLUP_LAG_SECONDS < 0 or ROLLUP_FOLD_SECONDS <= 0:
    raise ImproperlyConfigured("ROLLUP_LAG_SECONDS must be >= 0 and ROLLUP_FOLD_SECONDS > 0.")
CELERY_BEAT_SCHEDULE["fold-rollups"] = {
    "task": "insight.tasks.fold_rollups",
    "schedule": ROLLUP_FOLD_SECONDS,
    "options": {"expires": ROLLUP_FOLD_SECONDS},
}
# The daily digest of yesterday, per workflow, goes out at the first check after this local
# hour (0-23); beat checks every DAILY_DIGEST_CHECK_SECONDS and each digest is sent once.
DAILY_DIGEST_HOUR = env.int("DAILY_DIGEST_HOUR", default=7)
if not 0 <= DAILY_DIGEST_HOUR <= 23:
    raise ImproperlyConfigured("DAILY_DIGEST_HOUR must be an hour, 0-23.")
DAILY_DIGEST_ENABLED = env.bool("DAILY_DIGEST_ENABLED", default=True)
CELERY_BEAT_SCHEDULE["daily-digest"] = {
    "task": "insight.tasks.send_daily_digests",
    "schedule": env.float("DAILY_DIGEST_CHECK_SECONDS", default=900.0),
}
# --- Schedules (schedules: cron schedules on django-celery-beat) -----------------------------
# The shortest time allowed between two occurrences of a schedule's cron expression.
SCHEDULE_MIN_INTERVAL_MINUTES = env.int("SCHEDULE_MIN_INTERVAL_MINUTES", default=5)
if SCHEDULE_MIN_INTERVAL_MINUTES < 2:
    raise ImproperlyConfigured("SCHEDULE_MIN_INTERVAL_MINUTES must be at least 2.")
# Old secret keys still accepted for signatures (sessions, password resets) while rotating.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# Probes and scrapers speak plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
# OpenTelemetry tracing (needs the otel extra): spans for engine steps and model calls.
OTEL_ENABLED = env.bool("OTEL_ENABLED", default=False)
OTEL_EXPORTER = env.str("OTEL_EXPORTER", default="otlp")
if OTEL_EXPORTER not in ("otlp", "console"):
    raise ImproperlyConfigured("OTEL_EXPORTER must be 'otlp' or 'console'.")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="countersign")
