"""Run a workflow version over a dataset:
python manage.py evaluate WORKFLOW --version N --dataset NAME [--user NAME] [--wait SECONDS].

The same service as the evaluation page (evaluation.runner.start_evaluation): the runs go
through the approval gate and budgets, and a worker runs them. ``--wait`` polls until every
case has finished (or the time is up) and prints the report; the exit status is 1 when the
evaluation did not finish in time, 0 otherwise (the numbers say whether it passed).
"""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from evaluation import gate, report, runner
from evaluation.models import Dataset
from evaluation.versions import UnknownVersion, resolve


class Command(BaseCommand):
    help = "Evaluate a workflow version on one of its datasets; prints the evaluation id (and its report with --wait)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version names the workflow version to evaluate (Django's own --version, which
        # prints Django's, gives way).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("workflow")
        parser.add_argument(
            "--version",
            default="current",
            help="The declared version (newest snapshot of it), a content-hash prefix, or 'current'.",
        )
        parser.add_argument(
            "--dataset", required=True, help="The dataset's name (on the evaluation page)."
        )
        parser.add_argument(
            "--user", default="manager", help="Who runs it; must be a manager (default: manager)."
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Wait up to SECONDS for the runs to finish, then print the report.",
        )

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        dataset = Dataset.objects.filter(
            workflow_name=options["workflow"], name=options["dataset"]
        ).first()
        if dataset is None:
            names = ", ".join(
                Dataset.objects.filter(workflow_name=options["workflow"]).values_list(
                    "name", flat=True
                )
            )
            raise CommandError(
                f"{options['workflow']} has no dataset {options['dataset']!r}"
                + (f"; its datasets: {names}." if names else "; it has none.")
            )
        try:
            version = resolve(options["workflow"], options["version"])
            evaluation = runner.start_evaluation(version, dataset, user)
        except UnknownVersion as exc:
            raise CommandError(str(exc)) from None
        except runner.EvaluationRefused as exc:
            raise CommandError(
                "Evaluation refused: " + "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            ) from None
        if evaluation.needs_approval:
            self.stderr.write(
                f"Estimated at up to ${evaluation.estimate_usd:.2f} (threshold "
                f"${evaluation.threshold_usd:.2f}): its runs wait for another manager's approval."
            )
        self.stdout.write(f"evaluation {evaluation.pk}")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["wait"]
        r = report.report(evaluation)
        while not r.complete and time.monotonic() < deadline:
            time.sleep(1)
            r = report.report(evaluation)
        self.stdout.write(summary(r))
        if r.complete:
            for why in gate.blockers(version):
                self.stdout.write(f"gate: {why}")
        else:
            raise CommandError(
                f"{r.cases - r.finished} of {r.cases} case(s) not finished after {options['wait']:g} s."
            )


def summary(r: report.Report) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    lines = [
        f"cases {r.cases}, finished {r.finished}, passed {r.passed}",
        f"accuracy {pct(r.accuracy)}",
        f"escalation rate {pct(r.escalation_rate)}"
        + "".join(f"; {reason} {n} ({rate:.1%})" for reason, n, rate in r.escalation_rates()),
        f"provenance failures {r.hallucinations}",
        f"tool error rate {pct(r.tool_error_rate)} ({r.tool_errors} of {r.tool_calls} calls)",
        f"cost ${r.cost_usd:.6f}",
        f"latency p50 {r.latency_p50_ms} ms, p95 {r.latency_p95_ms} ms, max {r.latency_max_ms} ms",
    ]
    lines += [
        f"  {'PASS' if o.passed else 'FAIL'} {o.case.name}: expected {o.expected}, got {o.actual}"
        + (f" ({'; '.join(o.problems)})" if o.problems and not o.passed else "")
        for o in r.outcomes
    ]
    return "\n".join(lines)
