"""Benchmarks: time to link, time to instance, waiting capacity, export throughput.

Each module starts what it needs on loopback (a real Prefect server, the sandbox,
the callback receiver, served deployments), measures ours side by side with its
floors in one run, stops every process it started, and prints a Markdown table.
`python -m tooling.benchmarks` runs them all with defaults bounded in time.

Kept free of imports: the minimal floor flow lives in this package, and its flow
run subprocesses must import no more than Prefect and httpx.
"""
