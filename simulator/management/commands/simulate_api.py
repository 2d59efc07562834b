"""``manage.py simulate_api``: serve the simulated Anthropic API over HTTP on loopback.

Point the SDK at it with ``base_url=http://127.0.0.1:PORT`` (any api key).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator.django import make_api_from_settings
from simulator.faults import parse_faults
from simulator.server import make_server


class Command(BaseCommand):
    help = "Serve the simulated Anthropic Messages API (settings.SIMULATOR) over HTTP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--latency-scale", type=float, default=None)
        parser.add_argument(
            "--faults",
            default=None,
            help='global faults as JSON, e.g. \'[{"fault": "overloaded", "rate": 0.1}]\'',
        )
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        faults = None
        if options["faults"]:
            try:
                parse_faults(options["faults"])  # fail early with a clear message
            except ValueError as exc:
                raise CommandError(f"--faults: {exc}") from None
            faults = json.loads(options["faults"])
        api = make_api_from_settings(
            latency_scale=options["latency_scale"], faults=faults, seed=options["seed"]
        )
        server = make_server(api, options["host"], options["port"])
        self.stdout.write(f"Simulated Anthropic API listening on {server.base_url}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
