"""Enterprise fan-out: decompose, dispatch up to 50 specialists, validate, halt, aggregate.

Modules: models (Fanout, FanoutJob), slots (the global Redis semaphore), plan (validating
the orchestrator's decomposition), jobs (one job: specialist, JSONL, schema, validator,
retry once), coordinator (the run's steps: decompose, dispatch, halt, maybe-finish,
aggregate), artifacts (the per-run JSONL), reaper.
"""
