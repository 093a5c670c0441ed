"""Export throughput and peak memory of `export-connector-resource`, against a bare httpx loop.

    python -m tooling.benchmarks.export [--counts 10000 100000] [--reps 3] [--page-size 200]

For each record count a sandbox holding that many records per resource is
started, an instance is created in it over bare HTTP and saved as a
`ConnectorInstance` block. Then, alternating, the served deployment exports its
`contacts` to JSON Lines, and `benchmarks.bare_export` (a bare httpx paging loop
writing the same lines, in its own process) does the same work:

- records per second: ours over the run's own time in Prefect (Running to
  Completed: the block load, the paging task, the artifact, the result), the
  floor from its first request to its file closed; neither counts the process
  start, which the latency figures cover;
- peak memory: the peak RSS (VmHWM) of the flow run's process, and of the floor's,
  at each count: it must not grow with the count.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

from prefect.client.orchestration import PrefectClient, get_client

from blocks import ConnectorInstance, OpenConnectorsCredentials
from flows.steps.names import EXPORT_DEPLOYMENT, EXPORT_FLOW, full_name
from open_connectors import profile_for
from tooling.benchmarks.authorizations import BareSandbox
from tooling.benchmarks.bare_export import AUTHORIZATION_ENV
from tooling.benchmarks.deadline import Deadline, DeadlineReached
from tooling.benchmarks.harness import DEFAULT_POLL_FREQUENCY, Bench, run_alone
from tooling.benchmarks.report import (
    Row,
    Section,
    fmt_mib,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    median,
    ratio,
    verdict,
)
from tooling.devstack.processes import start_process
from tooling.devstack.proctree import ChildPeaks
from tooling.devstack.runs import wait_for_final
from tooling.devstack.sandbox_process import SandboxProcess, random_sandbox_config, start_sandbox

EXPORT_DEPLOYMENT_NAME = full_name(EXPORT_FLOW, EXPORT_DEPLOYMENT)
TARGET_RATIO = 1.5
TARGET_MEMORY_GROWTH = 1.1
RUN_TIMEOUT = 900.0


@dataclass
class Measurement:
    """One export.

    Attributes:
        records: Records written.
        seconds: The export's own time (see the module docstring).
        end_to_end: Ours only: from the creation request to Completed.
        peak_rss: Peak RSS of the exporting process, bytes.
    """

    records: int
    seconds: float
    peak_rss: int | None
    end_to_end: float | None = None

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds else 0.0


@dataclass
class ExportResult:
    """Per record count, the measurements of ours and of the floor."""

    page_size: int
    ours: dict[int, list[Measurement]] = field(default_factory=dict)
    bare: dict[int, list[Measurement]] = field(default_factory=dict)
    baseline: dict[int, list[Measurement]] = field(default_factory=dict)
    baseline_dir: str | None = None
    failures: list[str] = field(default_factory=list)
    complete: bool = True


async def save_instance(bench: Bench, sandbox: SandboxProcess, name: str) -> str:
    """Create an instance in `sandbox` over bare HTTP and save it as a block; its token."""
    bare = BareSandbox(sandbox.api_base_url, sandbox.config, sandbox.landing_url)
    created = await bare.create_instance(await bare.code(), name)
    config = sandbox.config
    await ConnectorInstance(
        instance_id=created["id"],
        instance_name=name,
        element_key="infusionsofterp",
        token=created["token"],
        credentials=OpenConnectorsCredentials(
            base_url=sandbox.api_base_url,
            user_secret=config.user_secret,
            organization_secret=config.organization_secret,
        ),
    ).asave(name, overwrite=True)
    return str(created["token"])


async def export_ours(
    client: PrefectClient, bench: Bench, block: str, destination: Path, page_size: int
) -> Measurement:
    """One run of the served export deployment."""
    assert bench.ours is not None
    deployment_id = bench.deployment_ids[EXPORT_DEPLOYMENT_NAME]
    with ChildPeaks(bench.ours.pid) as peaks:
        started = time.time()
        run = await client.create_flow_run_from_deployment(
            deployment_id,
            parameters={
                "instance_block": block,
                "destination": str(destination),
                "page_size": page_size,
            },
        )
        final = await wait_for_final(client, run.id, timeout=RUN_TIMEOUT)
        end_to_end = time.time() - started
        await bench.wait_for_idle()
    state = final.state
    if state is None or not state.is_completed():
        raise RuntimeError(f"The export ended {state.name if state else '?'}: {state}")
    summary = await state.result()
    assert final.start_time is not None and final.end_time is not None
    return Measurement(
        records=summary["records"] if isinstance(summary, dict) else summary.records,
        seconds=(final.end_time - final.start_time).total_seconds(),
        peak_rss=peaks.peak(),
        end_to_end=end_to_end,
    )


def export_bare(
    bench: Bench, sandbox: SandboxProcess, token: str, out: Path, page_size: int
) -> Measurement:
    """One run of the bare httpx loop in its own process."""
    config = sandbox.config
    env = dict(bench.stack.env)
    env[AUTHORIZATION_ENV] = (
        f"User {config.user_secret}, Organization {config.organization_secret}, Element {token}"
    )
    log = bench.stack.home / "logs" / "bare-export.log"
    process = start_process(
        "bare export",
        [
            sys.executable,
            "-m",
            "tooling.benchmarks.bare_export",
            f"{sandbox.api_base_url}/hubs/{profile_for('infusionsofterp').hub}/contacts",
            str(out),
            "--page-size",
            str(page_size),
        ],
        env=env,
        log_path=log,
        pipe_stdout=True,
    )
    try:
        stdout, _ = process.popen.communicate(timeout=RUN_TIMEOUT)
    finally:
        process.stop()
    if process.popen.returncode != 0:
        raise RuntimeError(f"The bare export failed: {process.log_tail()}")
    line = json.loads(stdout.decode().strip().splitlines()[-1])
    return Measurement(
        records=int(line["records"]), seconds=float(line["seconds"]), peak_rss=line["peak_rss"]
    )


async def measure(
    bench: Bench, *, counts: Sequence[int], reps: int, page_size: int, deadline: Deadline
) -> ExportResult:
    """Alternate ours (and the baseline copy, if any) and the floor `reps` times per count."""
    result = ExportResult(
        page_size=page_size, baseline_dir=str(bench.baseline) if bench.baseline else None
    )
    work = bench.stack.home / "exports"
    async with get_client() as client:
        await bench.prepare(client)
        bench.deployment_ids[EXPORT_DEPLOYMENT_NAME] = (
            await client.read_deployment_by_name(EXPORT_DEPLOYMENT_NAME)
        ).id
        try:
            for count in counts:
                deadline.check(f"export of {count}")
                sandbox = start_sandbox(
                    random_sandbox_config(records_per_resource=count),
                    bench.stack.home / f"sandbox-{count}",
                    env=bench.stack.env,
                    lifetime=deadline.remaining() + 600,
                )
                bench.extra.append(sandbox.process)
                try:
                    block = f"bench-export-{count}-{uuid4().hex[:6]}"
                    token = await save_instance(bench, sandbox, block)
                    # One untimed export of each first: the sandbox's and the
                    # serving process's first requests, the page cache.
                    await _one_each(client, bench, sandbox, block, token, work, page_size, None)
                    for rep in range(reps):
                        deadline.check(f"export of {count}")
                        await deadline.run(
                            _one_each(
                                client,
                                bench,
                                sandbox,
                                block,
                                token,
                                work,
                                page_size,
                                (result, count, rep % 2 == 1),
                            ),
                            f"export of {count}",
                        )
                finally:
                    sandbox.stop()
                    bench.extra.remove(sandbox.process)
        except DeadlineReached as exc:
            result.failures.append(str(exc))
            result.complete = False
    return result


async def _one_each(
    client: PrefectClient,
    bench: Bench,
    sandbox: SandboxProcess,
    block: str,
    token: str,
    work: Path,
    page_size: int,
    record: tuple[ExportResult, int, bool] | None,
) -> None:
    """One export of ours (and of the baseline), one of the floor; files removed after.

    `record` is `(result, count, reverse)`; None for an untimed warm-up.
    """
    _empty(work)

    def keep(kind: dict[int, list[Measurement]], measurement: Measurement) -> None:
        if record:
            kind.setdefault(record[1], []).append(measurement)

    async def ours(variant: str) -> None:
        await bench.use_ours(variant, client)
        measurement = await export_ours(client, bench, block, work, page_size)
        if record:
            keep(record[0].ours if variant == "current" else record[0].baseline, measurement)

    async def bare() -> None:
        out = work / f"bare-{uuid4().hex[:6]}.jsonl"
        measurement = await asyncio.to_thread(export_bare, bench, sandbox, token, out, page_size)
        if record:
            keep(record[0].bare, measurement)

    variants = ["current", "baseline"] if bench.baseline else ["current"]
    steps = [*(functools.partial(ours, variant) for variant in variants), bare]
    if record and record[2]:
        steps.reverse()
    for step in steps:
        await step()
    _empty(work)


def _empty(folder: Path) -> None:
    """An empty folder: the exports are deleted after each pair."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def section(result: ExportResult) -> Section:
    """The rows and notes of the export benchmark."""
    rows: list[Row] = []
    counts = sorted(set(result.ours) | set(result.bare))
    for count in counts:
        ours = result.ours.get(count, [])
        bare = result.bare.get(count, [])
        ours_seconds = median([m.seconds for m in ours])
        bare_seconds = median([m.seconds for m in bare])
        time_ratio = ratio(ours_seconds, bare_seconds)
        rows.append(
            Row(
                figure=f"Export throughput, {count:,} records",
                ours=f"{fmt_rate(median([m.rate for m in ours]))} ({fmt_seconds(ours_seconds)})",
                floor=(
                    f"bare httpx loop {fmt_rate(median([m.rate for m in bare]))} "
                    f"({fmt_seconds(bare_seconds)})"
                ),
                ratio=fmt_ratio(time_ratio),
                target=f"≤ {TARGET_RATIO}x time {verdict(time_ratio, TARGET_RATIO)}",
                n=str(len(ours)),
            )
        )
        baseline = result.baseline.get(count, [])
        if baseline:
            baseline_seconds = median([m.seconds for m in baseline])
            rows.append(
                Row(
                    figure=f"Export throughput, {count:,} records: baseline copy",
                    ours=(
                        f"{fmt_rate(median([m.rate for m in baseline]))} "
                        f"({fmt_seconds(baseline_seconds)})"
                    ),
                    floor=f"bare httpx loop ({fmt_seconds(bare_seconds)})",
                    ratio=fmt_ratio(ratio(baseline_seconds, bare_seconds)),
                    target=f"ours/baseline {fmt_ratio(ratio(ours_seconds, baseline_seconds))}",
                    n=str(len(baseline)),
                )
            )
    if len(counts) >= 2:
        low, high = counts[0], counts[-1]

        def peak(kind: dict[int, list[Measurement]], count: int) -> float | None:
            return median([m.peak_rss for m in kind.get(count, []) if m.peak_rss is not None])

        ours_low, ours_high = peak(result.ours, low), peak(result.ours, high)
        bare_low, bare_high = peak(result.bare, low), peak(result.bare, high)
        growth = ratio(ours_high, ours_low)
        rows.append(
            Row(
                figure=f"Export peak memory, {low:,} → {high:,} records",
                ours=f"{fmt_mib(ours_low)} → {fmt_mib(ours_high)}",
                floor=f"bare httpx loop {fmt_mib(bare_low)} → {fmt_mib(bare_high)}",
                ratio=f"{fmt_ratio(growth)} growth",
                target=f"≤ {TARGET_MEMORY_GROWTH}x {verdict(growth, TARGET_MEMORY_GROWTH)}",
                n=str(len(result.ours.get(high, []))),
            )
        )
    end_to_end = {
        count: median([m.end_to_end for m in result.ours.get(count, []) if m.end_to_end])
        for count in counts
    }
    notes = [
        f"page size {result.page_size}; ours and the floor alternate after one untimed export "
        "each; the floor pages, parses and writes the same JSON Lines.",
        "ours end to end (creation request to Completed, process start included): "
        + ", ".join(f"{count:,}: {fmt_seconds(value)}" for count, value in end_to_end.items())
        + ".",
        *result.failures,
    ]
    if result.baseline_dir:
        notes.append(f"baseline copy: {result.baseline_dir}, served the same way, alternating.")
    return Section(
        title="Export",
        rows=rows,
        notes=notes,
        data={
            "page_size": result.page_size,
            "ours": {c: [m.__dict__ for m in ms] for c, ms in result.ours.items()},
            "bare": {c: [m.__dict__ for m in ms] for c, ms in result.bare.items()},
            "baseline": {c: [m.__dict__ for m in ms] for c, ms in result.baseline.items()},
            "failures": result.failures,
        },
        complete=result.complete,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tooling.benchmarks.export", description=__doc__
    )
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--poll-frequency", type=int, default=DEFAULT_POLL_FREQUENCY)
    parser.add_argument("--deadline-minutes", type=float, default=15.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another copy of the project (e.g. `git archive <commit> | tar -x -C DIR`) "
        "to measure as well, served the same way",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export benchmark alone and print its table."""
    args = parse_args(argv)
    return run_alone(
        "export",
        args.deadline_minutes,
        lambda bench, deadline: measure(
            bench, counts=args.counts, reps=args.reps, page_size=args.page_size, deadline=deadline
        ),
        section,
        poll_frequency=args.poll_frequency,
        minimal=False,
        receiver=False,
        keep=args.keep,
        baseline=args.baseline,
    )


if __name__ == "__main__":
    sys.exit(main())
