"""The connection drops in the middle of a streamed answer.

The simulator's ``stream_cut`` fault sends message_start (with the usage the API reports
there) and half of the answer's content, then drops the connection, as a proxy restart or a
network cut would. The SDK does not retry a stream that broke part-way; the engine must
record the call with the usage the API had reported and charge it (the API bills what it
generated), then retry the turn under its ordinary policy, and the run must complete,
charged exactly once for each call.
"""

from __future__ import annotations

import time
from decimal import Decimal

from django.db.models import Sum

from orchestration.launch import start_run
from orchestration.models import AuditEvent, ModelCall, Run
from tests.faults.conftest import FAST_RECOVERY, worker_log
from tests.faults.invariants import check, wait_settled

S = Run.Status
FR = {"date": "2026-11-20"}


def test_a_stream_cut_mid_answer_is_charged_once_and_the_turn_retried(
    request, operator_user, worker_factory
):
    started = time.monotonic()
    worker_factory(
        env={**FAST_RECOVERY, "LLM_BACKOFF_BASE_SECONDS": "0.2", "LLM_BACKOFF_MAX_SECONDS": "1"}
    )
    cut = [
        {"fault": "stream_cut", "turn": 0, "times": 1},  # the first turn: a text + tool_use answer
        {"fault": "stream_cut", "turn": 2, "times": 1},  # a turn after a tool result
    ]
    runs = [
        start_run("financial_reporting", FR, operator_user, options={"simulator_faults": cut}),
        start_run("financial_reporting", FR, operator_user),  # the control: nothing cut
    ]
    wait_settled(runs, timeout=120, worker_log=worker_log(request))
    check(
        "stream cut mid-answer",
        "stream_cut at turns 0 and 2 of one run, once each",
        runs,
        started=started,
        worker_log=worker_log(request),
        expect_all_succeed=True,
    )

    run, control = (Run.objects.get(pk=r.pk) for r in runs)
    assert run.status == S.SUCCEEDED and control.status == S.SUCCEEDED
    for turn in (0, 2):
        calls = list(ModelCall.objects.filter(run=run, turn=turn).order_by("attempt"))
        assert len(calls) == 2, [(c.attempt, c.status, c.error[:200]) for c in calls]
        broken, retried = calls
        # The broken call: an error with the usage message_start reported, and its cost.
        assert broken.status == ModelCall.Status.ERROR and broken.attempt == 1
        assert broken.error.startswith("The stream broke after"), broken.error
        assert "RemoteProtocolError" in broken.error
        assert broken.input_tokens + broken.cache_read_tokens + broken.cache_write_tokens > 0
        assert broken.output_tokens >= 1
        assert broken.cost_usd > 0 and broken.price_id is not None
        assert broken.reserved_usd == 0 and broken.reserved_tokens == 0
        assert broken.usage["input_tokens"] == broken.input_tokens
        # What had arrived before the cut is kept: some of the answer, not all of it.
        assert broken.response_content, "the partial answer was not kept"
        assert broken.first_token_ms is not None
        # The retry: a whole answer, charged on its own.
        assert retried.status == ModelCall.Status.OK and retried.attempt == 2
        assert retried.cost_usd > 0
        failed = AuditEvent.objects.get(run=run, kind="model.failed", payload__turn=turn)
        assert Decimal(failed.payload["cost_usd"]) == broken.cost_usd
        assert failed.payload["usage"] == broken.usage

    # No double charge: the run's totals are exactly the sum of its calls, nothing is still
    # reserved, and the cut run paid exactly the control run plus its two broken calls.
    for r in (run, control):
        calls = ModelCall.objects.filter(run=r).aggregate(
            usd=Sum("cost_usd"), inp=Sum("input_tokens"), out=Sum("output_tokens")
        )
        assert r.cost_usd == calls["usd"]
        assert (r.input_tokens, r.output_tokens) == (calls["inp"], calls["out"])
        assert r.reserved_usd == 0 and r.reserved_tokens == 0
    broken_cost = ModelCall.objects.filter(run=run, status=ModelCall.Status.ERROR).aggregate(
        usd=Sum("cost_usd")
    )["usd"]
    assert ModelCall.objects.filter(run=run, status=ModelCall.Status.ERROR).count() == 2
    ok_calls = ModelCall.objects.filter(run=run, status=ModelCall.Status.OK).count()
    assert ok_calls == ModelCall.objects.filter(run=control).count()
    assert run.cost_usd == broken_cost + sum(
        ModelCall.objects.filter(run=run, status=ModelCall.Status.OK).values_list(
            "cost_usd", flat=True
        )
    )
