"""The runner poll frequency's trade-off: latency against idle load.

    python -m tooling.benchmarks.poll [--poll-frequencies 10 5 2 1] [--reps 3]

A served deployment finds new and resumed runs by asking the server every
`PREFECT_RUNNER_POLL_FREQUENCY` seconds (default 10), so both time to link and
time to instance include on average half of it. Polling more often costs CPU on
the server and in the serving process even when nothing happens. For each setting
this measures both: the CPU that the Prefect server and one serving process use
while idle (`--idle-seconds`, no run anywhere), then time to link and time to
instance of ours and of the minimal floor, as `benchmarks.latency` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from tooling.benchmarks.deadline import Deadline, DeadlineReached
from tooling.benchmarks.harness import Bench, run_alone
from tooling.benchmarks.latency import LatencyResult
from tooling.benchmarks.latency import measure as measure_latency
from tooling.benchmarks.report import Section, fmt_seconds, median
from tooling.devstack.proctree import sample_tree

DEFAULT_POLLS = (10, 5, 2, 1)


@dataclass
class PollResult:
    """Per poll frequency: idle CPU share and the latency measurements."""

    idle_seconds: float
    idle_cpu: dict[int, float] = field(default_factory=dict)
    latency: dict[int, LatencyResult] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    complete: bool = True


async def idle_cpu_share(bench: Bench, seconds: float) -> float:
    """CPU used by the server and the serving process while idle, as a share of one core."""
    roots = [bench.stack.prefect.process.pid, *bench.serving_pids()]
    before = sample_tree(roots)
    await asyncio.sleep(seconds)
    after = sample_tree(roots)
    return (after.cpu_seconds - before.cpu_seconds) / (after.at - before.at)


async def measure(
    bench: Bench,
    *,
    polls: Sequence[int],
    reps: int,
    idle_seconds: float,
    think_seconds: float,
    deadline: Deadline,
) -> PollResult:
    """For each setting: serve again, measure idle CPU (ours alone), then latency."""
    result = PollResult(idle_seconds=idle_seconds)
    try:
        for poll in polls:
            deadline.check(f"poll {poll}")
            if bench.minimal is not None:
                bench.minimal.stop()
                bench.minimal = None
            bench.poll_frequency = poll
            bench.serve_ours()
            # Let the new runner settle (its start-up work is not idle load).
            await asyncio.sleep(5)
            result.idle_cpu[poll] = await idle_cpu_share(bench, idle_seconds)
            bench.serve_minimal()
            # The poll frequency matters to the suspended path only (a new process).
            latency = await measure_latency(
                bench,
                reps=reps,
                think_seconds=think_seconds,
                deadline=deadline,
                hot=False,
                cpu=False,
            )
            result.latency[poll] = latency
            if not latency.complete:
                raise DeadlineReached(f"poll {poll}: {'; '.join(latency.failures)}")
    except DeadlineReached as exc:
        result.failures.append(str(exc))
        result.complete = False
    return result


def section(result: PollResult) -> Section:
    """The trade-off table."""
    rows: list[list[str]] = []
    for poll, latency in result.latency.items():
        rows.append(
            [
                f"{poll} s",
                fmt_seconds(median(latency.link("ours"))),
                fmt_seconds(median(latency.instance("ours"))),
                fmt_seconds(median(latency.link("minimal"))),
                fmt_seconds(median(latency.instance("minimal"))),
                f"{result.idle_cpu.get(poll, 0) * 100:.1f} %",
                f"{60 / poll:.0f}",
                str(len(latency.ours)),
            ]
        )
    return Section(
        title="Poll frequency",
        tables=[
            (
                "Runner poll frequency: latency against idle load (medians)",
                [
                    "PREFECT_RUNNER_POLL_FREQUENCY",
                    "ours: time to link",
                    "ours: time to instance",
                    "minimal: time to link",
                    "minimal: time to instance",
                    "idle CPU, server + 1 runner (% of a core)",
                    "polls per minute",
                    "n",
                ],
                rows,
            )
        ],
        notes=[
            f"idle CPU over {result.idle_seconds:.0f} s with nothing running, the Prefect "
            "server and the serving process of ours only.",
            *result.failures,
        ],
        data={
            "idle_cpu": result.idle_cpu,
            "latency": {
                poll: {
                    "link_ours": latency.link("ours"),
                    "instance_ours": latency.instance("ours"),
                    "link_minimal": latency.link("minimal"),
                    "instance_minimal": latency.instance("minimal"),
                }
                for poll, latency in result.latency.items()
            },
        },
        complete=result.complete,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tooling.benchmarks.poll", description=__doc__)
    parser.add_argument("--poll-frequencies", type=int, nargs="+", default=list(DEFAULT_POLLS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--think-seconds", type=float, default=1.0)
    parser.add_argument("--deadline-minutes", type=float, default=20.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the poll trade-off alone and print its table."""
    args = parse_args(argv)
    return run_alone(
        "poll",
        args.deadline_minutes,
        lambda bench, deadline: measure(
            bench,
            polls=args.poll_frequencies,
            reps=args.reps,
            idle_seconds=args.idle_seconds,
            think_seconds=args.think_seconds,
            deadline=deadline,
        ),
        section,
        poll_frequency=args.poll_frequencies[0],
        minimal=False,  # served by the measurement, again for every poll frequency
        keep=args.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
