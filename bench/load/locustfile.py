"""Locust users for the load test: reviewers and managers working the queues like a browser.

Run by bench/load/run.py (``make load``), which starts the app and passes, in the environment:
LOAD_REVIEWERS / LOAD_MANAGERS (usernames, comma-separated: one locust user signs in as each),
DEMO_PASSWORD, LOAD_CA_BUNDLE (the app's throw-away TLS certificate) and LOAD_FAILURES_FILE.
Every request goes through ``_call``: a 5xx is a failure named "server error", and so is any
status the page should never answer (a 403 on a mutation means the CSRF token or
the role is wrong, which a browser would show as an error page). Expected refusals (a ticket
another reviewer claimed first, a run no longer visible to a reviewer) are not failures: they
are what 50 people clicking at once produce.

Pages are named by their URL pattern (``/runs/[id]/``) so the stats CSV has one row per page;
HTMX requests carry ``HX-Request: true`` and are named with a `` (htmx)`` suffix.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from locust import HttpUser, between, events, task

PASSWORD = os.environ.get("DEMO_PASSWORD", "demo")
POLLS_PER_RUN_VIEW = 3
POLL_SECONDS = 1.5  # what run_detail.html's hx-trigger="every 1500ms" does

RUN_ID = re.compile(r'href="/runs/([0-9a-f-]{36})/"')
CLAIMABLE = re.compile(r'action="/reviews/tickets/(\d+)/claim/"')
PENDING_APPROVAL = re.compile(r'action="/reviews/approvals/(\d+)/decide/"')
STOP_BANNER = re.compile(r"<strong>What stopped the run:</strong>(.*?)</div>", re.S)
RESOLVE_ACTION = re.compile(r'name="action" value="(\w+)"')
REASONS = ("validation_failed", "regulatory_trigger", "ambiguity", "tool_error")


def _pool(name: str) -> list[str]:
    return [u for u in os.environ.get(name, "").split(",") if u]


# One locust process spawns every user, so popping from a module-level list hands each locust
# user its own account (distinct sessions, distinct assignees, distinct login attempts).
ACCOUNTS = {"reviewer": _pool("LOAD_REVIEWERS"), "manager": _pool("LOAD_MANAGERS")}


# Every failure of the whole test, sign-ins included: run.py passes --reset-stats, which clears
# locust's own failure table once everyone is signed in, so the checks read this file instead.
FAILURES: Counter[str] = Counter()


@events.request.add_listener
def _count_failure(request_type: str, name: str, exception=None, **_kw) -> None:
    if exception is not None:
        FAILURES[f"{request_type} {name}: {exception}"] += 1


@events.user_error.add_listener
def _count_user_error(user_instance, exception, tb, **_kw) -> None:
    FAILURES[f"{type(user_instance).__name__} raised {exception!r}"] += 1


@events.quitting.add_listener
def _write_failures(environment, **_kw) -> None:
    if path := os.environ.get("LOAD_FAILURES_FILE"):
        Path(path).write_text(json.dumps(FAILURES, indent=1))


class Browser(HttpUser):
    """A signed-in person with a browser: session cookie, CSRF token, HTMX headers."""

    abstract = True
    role = ""
    wait_time = between(1, 3)

    def on_start(self) -> None:
        # The app's throw-away certificate (run.py makes it); verified, not ignored.
        self.client.verify = os.environ.get("LOAD_CA_BUNDLE", True)
        pool = ACCOUNTS[self.role]
        if not pool:
            raise RuntimeError(f"no {self.role} accounts left: set LOAD_{self.role.upper()}S")
        self.username = pool.pop(0)
        self.sign_in()

    # --- plumbing ------------------------------------------------------------------------

    def _headers(self, htmx: bool, mutation: bool) -> dict[str, str]:
        headers = {"Referer": self.host + "/"}
        if htmx:
            headers["HX-Request"] = "true"
        if mutation:
            # What htmx sends from <body hx-headers='{"X-CSRFToken": ...}'>; Django checks it
            # against the csrftoken cookie (and the Referer, since this is HTTPS).
            headers["X-CSRFToken"] = self.client.cookies.get("csrftoken", "")
        return headers

    @contextmanager
    def _call(
        self,
        method: str,
        url: str,
        name: str,
        *,
        htmx: bool = False,
        ok=(200,),
        data: dict | None = None,
        check=None,
    ) -> Iterator:
        name += " (htmx)" if htmx else ""
        with self.client.request(
            method,
            url,
            name=name,
            data=data,
            catch_response=True,
            allow_redirects=False,
            headers=self._headers(htmx, method == "POST"),
        ) as response:
            if response.status_code == 0:  # no HTTP answer at all: connection or TLS error
                response.failure(f"no response: {response.error!r}")
            elif response.status_code >= 500:
                response.failure(f"server error {response.status_code}")
            elif response.status_code not in ok:
                response.failure(f"unexpected status {response.status_code}")
            elif "/login/" in response.headers.get("Location", "") and "/login/" not in url:
                response.failure("signed out")
            elif check and (problem := check(response)):
                response.failure(problem)
            else:
                response.success()
            yield response

    def get(self, url: str, name: str, **kw):
        with self._call("GET", url, name, **kw) as response:
            return response

    def post(self, url: str, name: str, data: dict, **kw):
        with self._call("POST", url, name, data=data, **kw) as response:
            return response

    def sign_in(self) -> None:
        self.get("/login/", "/login/")
        response = self.post(
            "/login/",
            "/login/",
            {
                "username": self.username,
                "password": PASSWORD,
                "next": "/",
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
            },
            ok=(302,),
        )
        if response.status_code != 302 or response.headers.get("Location") != "/":
            raise RuntimeError(f"{self.username} could not sign in ({response.status_code})")

    # --- what both roles do ---------------------------------------------------------------

    @task(3)
    def dashboard(self) -> None:
        self.get("/", "/")

    @task(3)
    def browse_runs(self) -> None:
        """The runs list, a filter through HTMX, then one run page with its live partial."""
        listing = self.get("/runs/", "/runs/")
        status = random.choice(["running", "awaiting_review", "succeeded", "queued"])
        filtered = self.get(f"/runs/?status={status}", "/runs/?status=[status]", htmx=True)
        ids = RUN_ID.findall(filtered.text) or RUN_ID.findall(listing.text)
        if ids:
            self.watch_run(random.choice(ids))

    def watch_run(self, run_id: str) -> None:
        # A reviewer sees a run only while its ticket is theirs or open: another reviewer
        # claiming it between the list and the click is a 404, as for a browser.
        ok = (200,) if self.role == "manager" else (200, 404)
        page = self.get(f"/runs/{run_id}/", "/runs/[id]/", ok=ok)
        if page.status_code != 200 or 'hx-trigger="every 1500ms"' not in page.text:
            return
        for _ in range(POLLS_PER_RUN_VIEW):
            time.sleep(POLL_SECONDS)
            live = self.get(
                f"/runs/{run_id}/live/", "/runs/[id]/live/", htmx=True, ok=(200, 286, 404)
            )
            if live.status_code != 200:  # 286: the run is final, htmx stops polling
                return

    @task(4)
    def work_a_ticket(self) -> None:
        """Open the escalation queue, claim an open ticket, read it, resolve it, watch the run."""
        reason = random.choice(("", "", "") + REASONS)
        url = "/reviews/tickets/" + (f"?reason={reason}" if reason else "")
        queue = self.get(url, "/reviews/tickets/" + ("?reason=[reason]" if reason else ""))
        open_ids = CLAIMABLE.findall(queue.text)
        if not open_ids:
            return
        ticket = random.choice(open_ids)
        row = self.post(
            f"/reviews/tickets/{ticket}/claim/", "/reviews/tickets/[id]/claim/", {}, htmx=True
        )
        if f"<td>{self.username}</td>" not in row.text:
            return  # someone else claimed it first: the row says who
        page = self.get(f"/reviews/tickets/{ticket}/", "/reviews/tickets/[id]/")
        time.sleep(random.uniform(1, 3))  # reading the context
        form = self.resolution(page.text)
        # The ticket is ours (claimed above), so a refusal is a bug worth a failure row.
        done = self.post(
            f"/reviews/tickets/{ticket}/resolve/",
            "/reviews/tickets/[id]/resolve/",
            form,
            htmx=True,
            check=_refused,
        )
        if target := done.headers.get("HX-Redirect", ""):
            self.watch_run(target.strip("/").split("/")[-1])

    def resolution(self, page: str) -> dict[str, str]:
        """What a reviewer would pick from what stopped the run."""
        found = STOP_BANNER.search(page)
        why = found.group(1).lower() if found else ""
        offered = set(RESOLVE_ACTION.findall(page))
        if "sign-off" in why and "approve" in offered:
            return {"action": "approve", "comment": "Signed off under load test."}
        if "manual review" in why and "resume" in offered:
            decision = random.choice(["approve", "approve", "reject"])
            return {
                "action": "resume",
                "note": f"Checked the payee: {decision}.",
                "comment": "Reviewed.",
            }
        return {"action": "fail", "comment": "Not safe to continue without the data owner."}


def _refused(response) -> str | None:
    if response.headers.get("HX-Redirect"):
        return None
    text = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())
    return "resolution refused: " + text[:160]


class Reviewer(Browser):
    role = "reviewer"
    fixed_count = int(os.environ.get("LOAD_REVIEWER_USERS", "30"))

    @task(2)
    def queue_by_age(self) -> None:
        self.get(
            "/reviews/tickets/?assignee=nobody&status=open", "/reviews/tickets/?assignee=nobody"
        )


class Manager(Browser):
    role = "manager"
    fixed_count = int(os.environ.get("LOAD_MANAGER_USERS", "20"))

    @task(5)
    def decide_approval(self) -> None:
        """The approvals queue, then approve (or reject, with a reason) one pending request."""
        queue = self.get("/reviews/approvals/", "/reviews/approvals/")
        pending = PENDING_APPROVAL.findall(queue.text)
        if not pending:
            return
        request_id = random.choice(pending)
        time.sleep(random.uniform(0.5, 2))  # reading the calculation
        if random.random() < 0.8:
            form = {"decision": "approve", "comment": ""}
        else:
            form = {"decision": "reject", "comment": "Over this week's budget for this workflow."}
        self.post(
            f"/reviews/approvals/{request_id}/decide/",
            "/reviews/approvals/[id]/decide/",
            form,
            htmx=True,
        )

    @task(1)
    def costs(self) -> None:
        self.get("/costs/", "/costs/")
