"""Demo workflows from the seeds, each with its tools over the demo warehouse and a
deterministic policy that plays the orchestrator in the simulator."""
