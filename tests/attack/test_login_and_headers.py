"""Login throttling (django-axes), security headers, templates without inline script, and
`manage.py check --deploy` clean with production settings."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

ROOT = Path(__file__).resolve().parents[2]


def _login(client: Client, username: str, password: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password})


def test_failed_logins_lock_the_account_from_that_address_with_a_clear_message(operator):
    from axes.models import AccessAttempt

    limit = settings.AXES_FAILURE_LIMIT
    client = Client()
    for _ in range(limit - 1):
        response = _login(client, "operator", "wrong")
        assert response.status_code == 200 and "didn't match" in response.content.decode()
    locked = _login(client, "operator", "wrong")
    assert locked.status_code == 429
    body = locked.content.decode()
    assert (
        "Too many failed sign-ins" in body
        and f"After {limit} failed attempts" in body
        and "operator" in body
    )
    # Locked means locked: the right password is refused too, and no session is made.
    right = _login(client, "operator", "demo")
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # The admin's login shares the count.
    assert _login(Client(), "operator", "demo", "/admin/login/").status_code == 429
    # Another user from the same address is not locked (the lock is per username and address).
    assert _login(Client(), "reviewer", "demo").status_code == 302
    # After the cool-off the lock lifts by itself.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - timedelta(hours=settings.AXES_COOLOFF_TIME, minutes=1)
    )
    after = _login(Client(), "operator", "demo")
    assert after.status_code == 302 and after["Location"] == "/"


def test_a_success_before_the_limit_resets_the_count(operator):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "operator", "wrong")
    assert _login(client, "operator", "demo").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(Client(), "operator", "wrong").status_code == 200


@pytest.mark.parametrize("path", ["/login/", "/", "/runs/", "/api/openapi.json", "/healthz"])
def test_security_headers(client, operator, path):
    client.force_login(operator)
    response = client.get(path)
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


INLINE = [
    (
        re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
        "inline <script>",
    ),
    (re.compile(r"\son[a-z]+\s*=", re.I), "on* handler attribute"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\shx-on", re.I), "hx-on (evaluated script)"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_templates_have_no_inline_script_or_style():
    problems = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = template.read_text()
        for pattern, what in INLINE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{template.relative_to(ROOT)}:{line}: {what}")
    assert not problems, "\n".join(problems)


def _production_env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    # The browser fixtures set DJANGO_ALLOW_ASYNC_UNSAFE in this process; a deployment does not.
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {
        **inherited,
        "DJANGO_DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_SIGNING_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "countersign.example.com",
        "DATABASE_URL": f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        **extra,
    }


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_production_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    done = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_check_deploy_catches_a_weakened_setting():
    """The check above can fail: turning HSTS off is reported."""
    done = _manage("check", "--deploy", "--fail-level", "WARNING", SECURE_HSTS_SECONDS="0")
    assert done.returncode != 0 and "security.W004" in done.stdout + done.stderr


def test_production_sends_hsts_and_redirects_to_https():
    script = (
        "from django.test import Client; c = Client(HTTP_HOST='countersign.example.com');"
        "r = c.get('/login/'); print('redirect', r.status_code, r.get('Location'));"
        "r = c.get('/login/', secure=True); print('hsts', r.status_code, r.get('Strict-Transport-Security'));"
        "print('cookie-secure', __import__('django.conf').conf.settings.SESSION_COOKIE_SECURE)"
    )
    done = _manage("shell", "-c", script)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "redirect 301 https://countersign.example.com/login/" in out
    assert "hsts 200 max-age=31536000; includeSubDomains; preload" in out
    assert "cookie-secure True" in out
