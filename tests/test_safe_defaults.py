"""Production is the default: settings loaded with nothing set are the production settings.

Each case imports config.settings in a fresh interpreter with a controlled environment (the
test process itself runs with DJANGO_DEBUG=1, set by tests/settings.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
django.setup()
from django.conf import settings
from django.test import Client
print("DEBUG", settings.DEBUG)
print("SSL_REDIRECT", getattr(settings, "SECURE_SSL_REDIRECT", False))
if os.environ.get("PROBE_STATIC"):
    response = Client(HTTP_HOST="localhost").get("/static/js/app.js")
    print("STATIC", response.status_code)
"""


def _settings(**env: str) -> subprocess.CompletedProcess[str]:
    # The parent's environment minus DJANGO_DEBUG and SECRET_KEY, plus what the case sets.
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_debug_is_off_unless_asked_for():
    done = _settings(
        SECRET_KEY=secrets.token_urlsafe(50), AUDIT_SIGNING_KEY=secrets.token_urlsafe(48)
    )
    assert done.returncode == 0, done.stderr
    assert "DEBUG False" in done.stdout and "SSL_REDIRECT True" in done.stdout


def test_without_debug_and_without_a_secret_key_startup_fails_clearly():
    done = _settings()
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DJANGO_DEBUG is false (its default)" in done.stderr


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_DEBUG", "SECRET_KEY", "AUDIT_SIGNING_KEY", "DJANGO_SETTINGS_MODULE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_code_only_commands_run_on_a_fresh_checkout_and_nothing_else_does():
    """`makemigrations --check` needs no production secrets (CI runs it on a bare checkout);
    a command that touches data still refuses to start without them."""
    done = _manage("makemigrations", "--check", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "No changes detected" in done.stdout
    refused = _manage("showmigrations")
    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr


def test_debug_on_as_make_run_sets_it_serves_the_static_files():
    # scripts/run.sh and scripts/services.sh env export DJANGO_DEBUG=1; whitenoise then serves
    # static/ straight from the finders, with no collectstatic.
    done = _settings(DJANGO_DEBUG="1", PROBE_STATIC="1")
    assert done.returncode == 0, done.stderr
    assert "DEBUG True" in done.stdout and "STATIC 200" in done.stdout


def test_the_dev_scripts_turn_debug_on():
    assert "export DJANGO_DEBUG=${DJANGO_DEBUG:-1}" in (ROOT / "scripts/run.sh").read_text()
    assert "export DJANGO_DEBUG=%q" in (ROOT / "scripts/services.sh").read_text()
