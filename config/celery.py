"""The Celery app. Settings live in config/settings.py under the CELERY_ namespace."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import worker_init
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = Celery("countersign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def threads_pool(pool_cls: Any) -> bool:
    """Whether a worker's pool (``-P threads``, as a name or as Celery's class) is threads."""
    name = pool_cls if isinstance(pool_cls, str) else getattr(pool_cls, "__module__", "")
    return name in ("threads", "celery.concurrency.thread")


@worker_init.connect
def _switch_interval_for_threads(sender: Any = None, **_: Any) -> None:
    """A threads-pool worker (the fan-out worker: 60 threads in one process) hands the GIL
    over every FANOUT_THREADS_SWITCH_INTERVAL seconds instead of Python's 5 ms. A thread
    coming back from Postgres holding a row lock (a run's charge or reservation, its audit
    chain's head) waits that long for the GIL while the others compute, and every job of the
    run queues behind that lock: a 50-job wave spent ~0.2 s per call in that convoy."""
    interval = settings.FANOUT_THREADS_SWITCH_INTERVAL
    if interval and threads_pool(getattr(sender, "pool_cls", None)):
        sys.setswitchinterval(interval)
        logger.info("threads pool: GIL switch interval %g s", interval)
