"""`python -m tooling.benchmarks`: every benchmark, bounded in time, one table at the end.

    python -m tooling.benchmarks [--deadline-minutes 80] [--quick] [--json results.json]

1. time to link and time to instance (ours, the minimal-Prefect floor and bare
   httpx, interleaved), then the runner poll frequency's trade-off, on one stack;
2. export throughput and peak memory at 10,000 and 100,000 records;
3. waiting capacity: 1,000 authorizations waiting at once on PostgreSQL (a throwaway
   cluster) with two serving processes, then all answered through the receiver;
4. 200 waiting runs answered all at once through the receiver, on SQLite and on
   PostgreSQL (a throwaway cluster): refusals and "database is locked" counted.

Each part has its own stack and its own share of the global deadline; a part cut
short reports what it measured. Every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from tooling.benchmarks import export, latency, poll, waiting
from tooling.benchmarks.deadline import Deadline
from tooling.benchmarks.harness import DEFAULT_POLL_FREQUENCY, bench_stack, stopped_cleanly
from tooling.benchmarks.machine import describe, load_average
from tooling.benchmarks.report import Section, render
from tooling.devstack.stack import Database

PARTS_ORDER = ("latency", "export", "waiting", "answers")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tooling.benchmarks", description=__doc__)
    parser.add_argument("--deadline-minutes", type=float, default=80.0)
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run in a few minutes"
    )
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(PARTS_ORDER),
        default=list(PARTS_ORDER),
    )
    return parser.parse_args(argv)


def _latency_and_poll(args: argparse.Namespace, deadline: Deadline) -> list[Section]:
    reps, polls, poll_reps = (2, [5, 1], 1) if args.quick else (9, list(poll.DEFAULT_POLLS), 4)
    with bench_stack(
        "latency", poll_frequency=DEFAULT_POLL_FREQUENCY, lifetime=deadline.remaining() + 600
    ) as bench:
        measured = asyncio.run(
            latency.measure(bench, reps=reps, think_seconds=1.0, deadline=deadline)
        )
        sections = [latency.section(measured)]
        traded = asyncio.run(
            poll.measure(
                bench,
                polls=polls,
                reps=poll_reps,
                idle_seconds=10.0 if args.quick else 30.0,
                think_seconds=1.0,
                deadline=deadline,
            )
        )
        sections.append(poll.section(traded))
    return sections


def _export(args: argparse.Namespace, deadline: Deadline) -> list[Section]:
    counts, reps = ([2_000, 10_000], 1) if args.quick else ([10_000, 100_000], 3)
    with bench_stack(
        "export", minimal=False, receiver=False, lifetime=deadline.remaining() + 600
    ) as bench:
        measured = asyncio.run(
            export.measure(bench, counts=counts, reps=reps, page_size=200, deadline=deadline)
        )
    return [export.section(measured)]


def _waiting(args: argparse.Namespace, deadline: Deadline) -> list[Section]:
    count = 10 if args.quick else 1000
    with bench_stack(
        "waiting",
        minimal=False,
        database="postgresql",
        servers=2,
        lifetime=deadline.remaining() + 600,
        environment=waiting.receiver_limits(4),
    ) as bench:
        measured = asyncio.run(
            waiting.measure(
                bench, count=count, then=0, in_flight=4, budget_minutes=0, deadline=deadline
            )
        )
    return [waiting.section(measured)]


def _answers(args: argparse.Namespace, deadline: Deadline) -> list[Section]:
    """The same waiting runs answered all at once, on SQLite and on PostgreSQL."""
    count = 20 if args.quick else 200
    sections: list[Section] = []
    databases: list[Database] = ["sqlite", "postgresql"]
    for number, database in enumerate(databases):
        share = deadline.within(deadline.remaining() / (len(databases) - number))
        title = f"{count} answers at once, {database}"
        try:
            with bench_stack(
                f"answers-{database}",
                minimal=False,
                database=database,
                lifetime=share.remaining() + 600,
                environment=waiting.receiver_limits(count),
            ) as bench:
                measured = asyncio.run(
                    waiting.measure(
                        bench,
                        count=count,
                        then=0,
                        in_flight=4,
                        answer_in_flight=count,
                        budget_minutes=0,
                        deadline=share,
                        settle=False,
                    )
                )
        except Exception as exc:  # a database giving up is a result: say it, go on
            sections.append(Section(title=title, notes=[f"failed: {type(exc).__name__}: {exc}"]))
            continue
        section = waiting.section(measured)
        section.title = title
        sections.append(section)
    return sections


# Each part's share of what is left of the global deadline when it starts.
PARTS: dict[str, tuple[Callable[[argparse.Namespace, Deadline], list[Section]], float]] = {
    "latency": (_latency_and_poll, 0.4),
    "export": (_export, 0.15),
    "waiting": (_waiting, 0.6),
    "answers": (_answers, 1.0),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the report."""
    args = parse_args(argv)
    deadline = Deadline(args.deadline_minutes * 60)
    machine = describe()
    sections: list[Section] = []
    with stopped_cleanly():
        for name in args.only:
            run, share = PARTS[name]
            # The last part selected gets whatever is left, whichever it is.
            share = 1.0 if name == args.only[-1] else share
            started = time.monotonic()
            print(f"[benchmarks] {name} …", file=sys.stderr, flush=True)
            try:
                sections += run(args, deadline.within(deadline.remaining() * share))
            except Exception as exc:  # one part failing must not hide the others
                traceback.print_exc()
                sections.append(Section(title=name, notes=[f"failed: {type(exc).__name__}: {exc}"]))
            print(
                f"[benchmarks] {name} took {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    footer = f"Total {deadline.elapsed() / 60:.1f} min; load average at the end {load_average()}."
    print(render(sections, machine) + "\n" + footer)
    if args.json:
        args.json.write_text(
            json.dumps(
                {s.title: {"complete": s.complete, **s.data} for s in sections},
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
