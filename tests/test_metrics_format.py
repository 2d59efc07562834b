"""/metrics follows Prometheus' naming rules: `promtool check metrics` finds nothing, and the
same rules checked here on the parsed exposition (for machines without promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from insight import rollups
from tests.insight_factories import activity

TOKEN = "format-test-token"
# promlint's abbreviated and non-base units (a prefix or suffix word of the name).
NON_BASE_UNITS = {
    "ms", "us", "ns", "sec", "secs", "min", "mins", "milliseconds", "microseconds", "nanoseconds",
    "minutes", "hours", "days", "kb", "mb", "gb", "kilobytes", "megabytes", "gigabytes", "percent",
}  # fmt: skip


@pytest.fixture
def exposition(client, operator, settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    activity(operator, [0, 1], per_day=8)
    rollups.fold()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt install prometheus)"
)
def test_promtool_check_metrics_finds_nothing(exposition):
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""


def test_metric_names_follow_the_rules(exposition):
    families = list(text_string_to_metric_families(exposition))
    names = {f.name for f in families}
    # The figures issue 15 asks for are all there.
    for expected in (
        "countersign_model_call_duration_seconds",
        "countersign_tool_call_duration_seconds",
        "countersign_step_duration_seconds",
        "countersign_run_duration_seconds",
        "countersign_cost_usd",
        "countersign_tool_calls",
        "countersign_model_calls",
        "countersign_retries",
        "countersign_escalations",
        "countersign_queue_depth",
    ):
        assert expected in names, expected
    for family in families:
        assert family.documentation.strip(), f"{family.name} has no help"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        words = family.name.split("_")
        assert not NON_BASE_UNITS & set(words), f"{family.name}: use base units (seconds, bytes)"
        assert not {"counter", "gauge", "histogram", "summary"} & set(words), family.name
        samples = {s.name for s in family.samples}
        if family.type == "counter":
            assert samples <= {family.name + "_total", family.name + "_created"}, samples
        elif family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
            assert samples <= {family.name + s for s in ("_bucket", "_count", "_sum", "_created")}
            for s in family.samples:
                assert "le" in s.labels or not s.name.endswith("_bucket")
        else:
            assert not family.name.endswith(("_total", "_count", "_sum", "_bucket")), family.name


def test_histogram_buckets_are_cumulative_and_end_with_the_count(exposition):
    for family in text_string_to_metric_families(exposition):
        if family.type != "histogram":
            continue
        series: dict[tuple, list[tuple[float, float]]] = {}
        counts: dict[tuple, float] = {}
        for s in family.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            if s.name.endswith("_bucket"):
                series.setdefault(key, []).append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                counts[key] = s.value
        for key, buckets in series.items():
            values = [v for _, v in sorted(buckets)]
            assert values == sorted(values), (family.name, key)
            assert values[-1] == counts[key]


# --- the Grafana dashboard and the Prometheus alert rules shipped in docs/monitoring ----------

MONITORING = Path(__file__).resolve().parent.parent / "docs" / "monitoring"


def _sample_names(exposition: str) -> set[str]:
    """Every series name, and every family's name (a gauge with nothing to count has none)."""
    families = list(text_string_to_metric_families(exposition))
    return {s.name for f in families for s in f.samples} | {f.name for f in families}


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"countersign_[a-z0-9_]+", text))


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt install prometheus)"
)
def test_the_alert_rules_are_valid_prometheus_rules():
    checked = subprocess.run(
        ["promtool", "check", "rules", str(MONITORING / "countersign-alerts.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


def test_the_alert_rules_and_the_dashboard_use_only_metrics_that_exist(exposition, operator):
    names = _sample_names(exposition)
    rules = (MONITORING / "countersign-alerts.yml").read_text()
    dashboard = json.loads((MONITORING / "countersign-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    referenced = _referenced(rules) | _referenced(" ".join(exprs))
    # Budget gauges exist once a global or workflow budget is in force; first-token once the
    # engine records it (rollups.TTFT_FIELD).
    optional = {"countersign_budget_spent_usd", "countersign_budget_limit_usd"}
    if rollups.TTFT_FIELD is None:
        optional.add("countersign_model_call_first_token_seconds_bucket")
    missing = referenced - names - optional
    assert not missing, missing
    # Every in-app rule (alerts.rules) has its Prometheus twin.
    for rule in ("cost_spike", "cost_baseline", "latency", "error_rate", "retry_burst", "escalation_burst",
                 "budget", "breaker"):  # fmt: skip
        assert f"rule: {rule}}}" in rules, rule


def test_budgets_in_force_are_gauges_from_the_rollups(client, operator, settings):
    from decimal import Decimal

    from costs.models import Budget
    from tests.insight_factories import day_at, model_call, run_at

    settings.METRICS_TOKEN = TOKEN
    Budget.objects.create(scope="global", period="day", limit_usd=Decimal("10"), hard=True)
    Budget.objects.create(scope="workflow", workflow_name="payment_approval", period="month",
                          limit_usd=Decimal("50"), hard=False)  # fmt: skip
    run = run_at(operator, day_at(0, hour=0, minute=5), workflow="payment_approval")
    model_call(run, day_at(0, hour=0, minute=5), model="claude-opus-4-6", ms=10, cost="2.5")
    rollups.fold()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(
            client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).content.decode()
        )
        for s in f.samples
    }
    day = (("hard", "true"), ("period", "day"), ("scope", "global"), ("workflow", ""))
    month = (
        ("hard", "false"),
        ("period", "month"),
        ("scope", "workflow"),
        ("workflow", "payment_approval"),
    )
    assert samples[("countersign_budget_limit_usd", day)] == 10
    assert samples[("countersign_budget_spent_usd", day)] == 2.5
    assert samples[("countersign_budget_limit_usd", month)] == 50
    assert samples[("countersign_budget_spent_usd", month)] == 2.5
