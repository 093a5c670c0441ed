"""Waiting capacity: many authorizations waiting at once from the served deployment.

    python -m tooling.benchmarks.waiting [--count 200] [--then 1000] [--in-flight 4]

1. Memory and processes of everything the benchmark started (every process of
   the stack and all their descendants, RSS added up, sampled twice a second)
   with nothing waiting, with 1 authorization waiting, then with `--count`
   waiting. A suspended run holds no process, so the count should not move and
   the memory should stay within 1.2x of the one-waiting figure.
2. All of them answered through the callback receiver (Allow pressed over HTTP,
   the redirect delivered to the receiver): time until all are complete,
   instances created, duplicates (must be 0).
3. `--then` (1,000 by default) is run only when the rate measured at `--count`
   says it fits in `--budget-minutes` and the deadline; otherwise the arithmetic
   is reported instead.

Runs are started and answered with at most `--in-flight` of them between start
and waiting (or between answer and completion) at once: people do not all click at
the same instant, and an unlimited burst on two cores only adds thrashing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError

from flows.steps.hot_slots import ensure_hot_wait_limit
from flows.steps.hot_wait import HotWaitSettings
from flows.steps.run_identity import run_tag
from tooling.benchmarks.authorizations import (
    Authorization,
    answer,
    start_ours,
    wait_for_link,
)
from tooling.benchmarks.deadline import Deadline, DeadlineReached
from tooling.benchmarks.harness import DEFAULT_POLL_FREQUENCY, Bench, run_alone
from tooling.benchmarks.report import Row, Section, fmt_mib, fmt_ratio, fmt_seconds, median, verdict
from tooling.devstack.processes import StackError
from tooling.devstack.proctree import TreeSampler, process_tree
from tooling.devstack.runs import wait_for_final

# Memory with many waiting against one waiting, once every hot wait has ended.
TARGET_MEMORY_RATIO = 1.5
# The receiver's own upper bounds for its per-client burst and concurrency settings.
MAX_RECEIVER_BOUND = 1000


def receiver_limits(answers_at_once: int) -> dict[str, str]:
    """The receiver's bounds raised for `answers_at_once` callbacks from this one address.

    Every callback of a benchmark comes from one loopback client; in real use each
    person's browser is its own client, so the per-client bounds would not bite. The
    client's bucket takes them all at once and refills at the highest rate the
    receiver allows (100 a second), so a long series is not refused either.
    """
    bound = str(min(max(answers_at_once, 1), MAX_RECEIVER_BOUND))
    return {
        "OC_CALLBACK_CLIENT_BURST": bound,
        "OC_CALLBACK_CLIENT_PER_SECOND": "100",
        "OC_CALLBACK_MAX_CONCURRENT_CALLBACKS": bound,
    }


WINDOW_SECONDS = 10.0
RUN_TIMEOUT = 1800.0
# The PostgreSQL cluster's name in the tables: its memory and CPU are counted (on
# SQLite the database lives in the server's process), its processes are not held by
# waiting runs (their number follows the server's connection pool).
DATABASE = "PostgreSQL"
# How long a settled window waits for the processes of the runs waiting hot to end: the
# hot window and a minute (240 s by default).
SETTLE_TIMEOUT = HotWaitSettings().seconds + 60
# Looks at the runs twice a second: with hundreds of runs the latency benchmarks'
# 50 ms would make the looking a large share of the server's work being measured.
LOOK_SECONDS = 0.5
# Runs read per request when the final states are counted, and how often it is tried.
TALLY_PAGE = 200
TALLY_ATTEMPTS = 3
TALLY_SECONDS = 180.0
ENDED_UNCOMPLETED = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
# What a server too busy to answer the benchmark's own requests looks like: counted, not fatal.
REFUSALS = (httpx.HTTPError, PrefectHTTPStatusError, StackError)


@dataclass
class Holding:
    """What the stack held during a quiet window.

    Attributes:
        waiting: Authorizations waiting.
        processes: Median process count of everything started but the database.
        rss: Median total RSS in bytes.
        by_process: Median RSS per started process (its tree), by name.
        flow_run_processes: Median number of flow-run processes (runs waiting hot).
        settled: Taken once every hot wait had ended (every waiting run suspended).
    """

    waiting: int
    processes: float
    rss: float
    by_process: dict[str, float]
    flow_run_processes: float = 0
    settled: bool = False


@dataclass
class Round:
    """One round: `count` authorizations made to wait, then answered.

    Attributes:
        count: Authorizations asked for.
        waiting: How many were waiting at once.
        start_seconds: From the first start until all were waiting.
        start_cpu_seconds: CPU used by everything started during that phase.
        holding: Memory and processes while they all waited (the last ones still hot).
        settled: The same once every hot wait had ended.
        answered: How many were answered through the receiver.
        complete_seconds: From the first answer until all were final.
        answer_cpu_seconds: CPU used during that phase.
        completed: Runs that ended Completed.
        instances: Runs with an instance in the sandbox.
        duplicates: Instances beyond one per run.
        refused_answers: Callbacks the receiver did not answer with 200 (or in time).
        database_locked: "database is locked" lines of the server's log in this round.
        client_errors: The benchmark's own Prefect requests that failed or timed out
            (a server too busy to answer; the run goes on and is counted at the end).
        final_states: The runs' states when the round ended, by state name.
        failures: What went wrong.
    """

    count: int
    waiting: int = 0
    start_seconds: float | None = None
    start_cpu_seconds: float | None = None
    holding: Holding | None = None
    settled: Holding | None = None
    answered: int = 0
    complete_seconds: float | None = None
    answer_cpu_seconds: float | None = None
    completed: int = 0
    instances: int = 0
    duplicates: int = 0
    refused_answers: int = 0
    database_locked: int = 0
    client_errors: int = 0
    final_states: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def seconds_per_run(self) -> float | None:
        """Wall seconds per authorization, start and answer phases together."""
        if self.start_seconds is None or self.complete_seconds is None or not self.completed:
            return None
        return (self.start_seconds + self.complete_seconds) / self.count


@dataclass
class WaitingResult:
    """The measurements of the waiting-capacity benchmark."""

    in_flight: int
    answer_in_flight: int = 0
    database: str = "sqlite"
    hot_slots: int = 0
    idle: Holding | None = None
    one: Holding | None = None
    one_settled: Holding | None = None
    servers: int = 1
    rounds: list[Round] = field(default_factory=list)
    skipped: str | None = None
    complete: bool = True


def _names(bench: Bench) -> dict[int, str]:
    names = {
        bench.stack.prefect.process.pid: "Prefect server",
        bench.stack.sandbox.process.pid: "sandbox",
    }
    if bench.stack.receiver is not None:
        names[bench.stack.receiver.process.pid] = "callback receiver"
    if bench.stack.postgresql is not None:
        names[bench.stack.postgresql.process.pid] = DATABASE
    serving = [bench.ours, *bench.more_ours] if bench.ours is not None else []
    for number, process in enumerate(serving, start=1):
        label = f"serving process {number}" if len(serving) > 1 else "serving process"
        names[process.pid] = f"{label} (+ flow runs)"
    return names


async def hold(
    bench: Bench, sampler: TreeSampler, waiting: int, hot_slots: int, *, settled: bool = False
) -> Holding:
    """Sample a quiet window and summarize it.

    Quiet: no run between start and waiting, so at most `hot_slots` flow-run processes
    (the runs waiting hot) are alive; every other waiting run is suspended. `settled`
    waits for the hot waits to end as well (no flow-run process at all).
    """
    allowed = 0 if settled else hot_slots
    deadline = time.monotonic() + (SETTLE_TIMEOUT if settled else 120)
    # Polls /proc: nothing signals a process's exit to this one.
    while bench.flow_run_processes() > allowed and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    # Labelled "all suspended" only if it really was.
    settled = settled and bench.flow_run_processes() == 0
    start = time.monotonic()
    per_process: dict[str, list[float]] = {}
    flow_runs: list[float] = []
    held: list[float] = []
    while time.monotonic() - start < WINDOW_SECONDS:
        count = 0
        for pid, name in _names(bench).items():
            tree = process_tree([pid])
            per_process.setdefault(name, []).append(sum(info.rss for info in tree.values()))
            count += len(tree) if name != DATABASE else 0
        held.append(count)
        flow_runs.append(bench.flow_run_processes())
        await asyncio.sleep(1.0)
    samples = sampler.between(start, time.monotonic())
    return Holding(
        waiting=waiting,
        processes=median(held) or 0,
        rss=median([sample.rss for sample in samples]) or 0,
        by_process={name: median(values) or 0 for name, values in per_process.items()},
        flow_run_processes=median(flow_runs) or 0,
        settled=settled,
    )


async def hot_slots(client: PrefectClient) -> int:
    """The hot-wait limit's slots, the limit created as a run would create it."""
    return await ensure_hot_wait_limit(client, HotWaitSettings().limit)


def refusals_in_server_log(bench: Bench) -> int:
    """How many times the Prefect server's log says its database refused (SQLite's lock)."""
    path = bench.stack.home / "logs" / "prefect-server.log"
    if not path.exists():
        return 0
    return path.read_text(encoding="utf-8", errors="replace").count("database is locked")


async def run_round(
    client: PrefectClient,
    http: httpx.AsyncClient,
    bench: Bench,
    sampler: TreeSampler,
    *,
    count: int,
    in_flight: int,
    answer_in_flight: int,
    slots: int,
    deadline: Deadline,
    already: list[Authorization] | None = None,
    settle: bool = True,
) -> Round:
    """Make `count` authorizations wait (counting `already` waiting ones), then answer all.

    At most `in_flight` runs are between start and waiting at once, and at most
    `answer_in_flight` between answer and completion.
    """
    result = Round(count=count)
    runs = list(already or [])
    gate = asyncio.Semaphore(in_flight)
    answer_gate = asyncio.Semaphore(answer_in_flight)
    locked_before = refusals_in_server_log(bench)

    def refused(exc: Exception) -> None:
        result.client_errors += 1
        result.failures.append(_describe(exc))

    async def start_one() -> None:
        async with gate:
            try:
                auth = await start_ours(client, bench)
                runs.append(auth)
                await wait_for_link(client, auth, timeout=RUN_TIMEOUT, poll_seconds=LOOK_SECONDS)
            except REFUSALS as exc:
                refused(exc)
                return
            result.waiting += 1

    result.waiting = len(runs)
    cpu0, started = _cpu(sampler), time.monotonic()
    try:
        await deadline.run(
            asyncio.gather(*(start_one() for _ in range(count - len(runs)))), "starting"
        )
        result.start_seconds = time.monotonic() - started
        result.start_cpu_seconds = _cpu(sampler) - cpu0
        print(f"{count} waiting after {result.start_seconds:.0f} s", file=sys.stderr)
        result.holding = await deadline.run(hold(bench, sampler, count, slots), "holding")
        if settle:
            result.settled = await deadline.run(
                hold(bench, sampler, count, slots, settled=True), "settling"
            )

        async def answer_one(auth: Authorization) -> None:
            async with answer_gate:
                try:
                    await answer(
                        client,
                        http,
                        auth,
                        timeout=RUN_TIMEOUT,
                        poll_seconds=LOOK_SECONDS,
                        wait_for_instance=False,
                    )
                except (StackError, httpx.HTTPError) as exc:
                    # The receiver said no, or did not answer in time.
                    result.refused_answers += 1
                    result.failures.append(_describe(exc))
                    return
                result.answered += 1
                # Holds the answer's place until the run ends; how it ended is counted
                # once, by the tally at the end of the round.
                try:
                    await wait_for_final(client, auth.run_id, timeout=RUN_TIMEOUT)
                except REFUSALS as exc:
                    refused(exc)

        cpu0, started = _cpu(sampler), time.monotonic()
        await deadline.run(asyncio.gather(*(answer_one(auth) for auth in runs)), "answering")
        result.complete_seconds = time.monotonic() - started
        result.answer_cpu_seconds = _cpu(sampler) - cpu0
        print(f"{count} complete after {result.complete_seconds:.0f} s", file=sys.stderr)
    except DeadlineReached as exc:
        result.failures.append(f"{exc} ({result.waiting} waiting)")
    finally:
        await tally_final_states(client, runs, result)
        await count_instances(http, bench, runs, result)
        result.database_locked = refusals_in_server_log(bench) - locked_before
        # The server's and the runs' logs are what explains a failure: keep them.
        bench.keep_logs = bench.keep_logs or bool(result.failures) or result.completed < count
    return result


def _describe(exc: Exception) -> str:
    """An error of the benchmark's own requests, short, for the notes."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"


async def tally_final_states(
    client: PrefectClient, runs: list[Authorization], result: Round
) -> None:
    """Count the runs' states as the server has them now; `completed` is taken from it.

    Read in pages, each tried a few times, within `TALLY_SECONDS` in all: the server
    may still be digging out of the burst. What was not read is not counted as
    completed, and the round says so.
    """
    states: dict[str, int] = {}
    completed = 0
    try:
        async with asyncio.timeout(TALLY_SECONDS):
            async for name, is_completed in _final_states(client, runs, result):
                states[name] = states.get(name, 0) + 1
                completed += is_completed
    except TimeoutError:
        result.failures.append(f"final states not all read within {TALLY_SECONDS:.0f} s")
    result.final_states = states
    result.completed = completed


async def _final_states(
    client: PrefectClient, runs: list[Authorization], result: Round
) -> AsyncIterator[tuple[str, bool]]:
    """Each run's state name and whether it is Completed, page by page."""
    ids = [auth.run_id for auth in runs]
    for first in range(0, len(ids), TALLY_PAGE):
        page = ids[first : first + TALLY_PAGE]
        for attempt in range(TALLY_ATTEMPTS):
            try:
                found = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)),
                    limit=len(page),
                )
                break
            except REFUSALS as exc:
                result.client_errors += 1
                if attempt == TALLY_ATTEMPTS - 1:
                    result.failures.append(f"final states not read: {type(exc).__name__}")
                    found = []
        for run in found:
            state = run.state
            name = state.name if state and state.name else "unknown"
            if state is not None and state.type in ENDED_UNCOMPLETED:
                # First in the notes: why a run ended without its instance matters most.
                result.failures.insert(
                    0, f"run {run.id} ended {name}: {(state.message or '')[:300]}"
                )
            yield name, bool(state and state.type == StateType.COMPLETED)


async def count_instances(
    http: httpx.AsyncClient, bench: Bench, runs: list[Authorization], result: Round
) -> None:
    """Instances per run, from the sandbox's own record (deleted ones included)."""
    everything = (await http.get(f"{bench.stack.sandbox.url}/_sandbox/instances")).json()
    per_tag: dict[str, int] = {}
    for item in everything:
        for tag in item.get("tags", []):
            per_tag[tag] = per_tag.get(tag, 0) + 1
    counts = [per_tag.get(run_tag(str(auth.run_id)), 0) for auth in runs]
    result.instances = sum(1 for value in counts if value)
    result.duplicates = sum(value - 1 for value in counts if value > 1)


def _cpu(sampler: TreeSampler) -> float:
    latest = sampler.latest()
    return latest.cpu_seconds if latest else 0.0


async def measure(
    bench: Bench,
    *,
    count: int,
    then: int,
    in_flight: int,
    budget_minutes: float,
    deadline: Deadline,
    answer_in_flight: int | None = None,
    settle: bool = True,
) -> WaitingResult:
    """The whole benchmark on one stack.

    `settle` also measures memory once every hot wait has ended (a hot window each
    for one waiting and for all waiting).
    """
    answering = answer_in_flight or in_flight
    result = WaitingResult(
        in_flight=in_flight,
        answer_in_flight=answering,
        database="postgresql" if bench.stack.postgresql else "sqlite",
        servers=1 + len(bench.more_ours),
    )
    with TreeSampler(bench.roots, interval=0.5) as sampler:
        async with (
            get_client() as client,
            httpx.AsyncClient(
                timeout=300, limits=httpx.Limits(max_connections=max(in_flight, answering) * 2)
            ) as http,
        ):
            await bench.prepare(client)
            try:
                result.idle = await deadline.run(hold(bench, sampler, 0, 0), "idle window")
                first = await start_ours(client, bench)
                await deadline.run(wait_for_link(client, first, timeout=RUN_TIMEOUT), "first run")
                result.hot_slots = await hot_slots(client)
                result.one = await deadline.run(
                    hold(bench, sampler, 1, result.hot_slots), "one waiting"
                )
                if settle:
                    result.one_settled = await deadline.run(
                        hold(bench, sampler, 1, result.hot_slots, settled=True), "one settled"
                    )
            except DeadlineReached as exc:
                result.complete = False
                result.skipped = str(exc)
                return result
            round_ = await run_round(
                client,
                http,
                bench,
                sampler,
                count=count,
                in_flight=in_flight,
                answer_in_flight=answering,
                slots=result.hot_slots,
                deadline=deadline,
                already=[first],
                settle=settle,
            )
            result.rounds.append(round_)
            if round_.failures or round_.completed < count:
                result.complete = False
            if not then:
                return result
            per_run = round_.seconds_per_run()
            if per_run is None:
                result.skipped = f"{then}: not tried, the {count} round did not complete."
                return result
            estimate = per_run * then
            fits = estimate <= budget_minutes * 60 and estimate * 1.2 <= deadline.remaining()
            arithmetic = (
                f"{then} x {per_run:.2f} s per authorization (start and answer, measured at "
                f"{count}) ≈ {estimate / 60:.0f} min"
            )
            if not fits:
                result.skipped = (
                    f"{then} not run: {arithmetic}, over the {budget_minutes:.0f} min budget"
                    f" (or the {deadline.remaining() / 60:.0f} min left)."
                )
                return result
            result.skipped = None
            bigger = await run_round(
                client,
                http,
                bench,
                sampler,
                count=then,
                in_flight=in_flight,
                answer_in_flight=answering,
                slots=result.hot_slots,
                deadline=deadline,
                settle=settle,
            )
            result.rounds.append(bigger)
            if bigger.failures or bigger.completed < then:
                result.complete = False
    return result


def section(result: WaitingResult) -> Section:
    """The rows and notes of the waiting benchmark."""
    rows: list[Row] = []
    one = result.one
    notes = [
        f"{result.database} database; {result.servers} serving process(es); at most "
        f"{result.in_flight} runs between start and waiting "
        f"and {result.answer_in_flight} between answer and completion at once; memory is the "
        "total RSS of every process started, median of a "
        f"{WINDOW_SECONDS:.0f} s quiet window; K = {result.hot_slots} hot-wait slots (the "
        "runs waiting hot hold their process, every other waiting run is suspended).",
    ]
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    holdings = [h for h in (result.idle, one, result.one_settled) if h is not None]
    for round_ in result.rounds:
        holdings += [h for h in (round_.holding, round_.settled) if h is not None]
    for round_ in result.rounds:
        holding, settled, one_settled = round_.holding, round_.settled, result.one_settled
        memory_ratio = (
            settled.rss / one_settled.rss if settled and one_settled and one_settled.rss else None
        )
        rows.append(
            Row(
                figure=f"Waiting capacity: memory with {round_.count} waiting (all suspended)",
                ours=fmt_mib(settled.rss if settled else None),
                floor=f"1 waiting {fmt_mib(one_settled.rss if one_settled else None)}",
                ratio=fmt_ratio(memory_ratio),
                target=f"≤ {TARGET_MEMORY_RATIO}x {verdict(memory_ratio, TARGET_MEMORY_RATIO)}",
                n=str(round_.waiting),
            )
        )
        hot_ratio = holding.rss / one.rss if holding and one and one.rss else None
        rows.append(
            Row(
                figure=f"Waiting capacity: memory with {round_.count} waiting (the last K hot)",
                ours=fmt_mib(holding.rss if holding else None),
                floor=f"1 waiting hot {fmt_mib(one.rss if one else None)}",
                ratio=fmt_ratio(hot_ratio),
                target="(K processes at most)",
                n=str(round_.waiting),
            )
        )
        fixed = result.idle.processes if result.idle else None
        limit = fixed + result.hot_slots if fixed is not None else None
        rows.append(
            Row(
                figure=f"Waiting capacity: processes with {round_.count} waiting",
                ours=(
                    f"{holding.processes:.0f} ({holding.flow_run_processes:.0f} waiting hot)"
                    if holding
                    else "—"
                ),
                floor=f"nothing waiting {fixed:.0f}" if fixed is not None else "—",
                ratio="—",
                target=(
                    f"≤ K + fixed = {result.hot_slots} + {fixed:.0f} "
                    + verdict(holding.processes if holding else None, limit)
                    if limit is not None
                    else "≤ K + fixed —"
                ),
                n=str(round_.waiting),
            )
        )
        rows.append(
            Row(
                figure=f"Waiting capacity: {round_.count} answered via the receiver",
                ours=(
                    (
                        "all complete"
                        if round_.completed == round_.count
                        else f"{round_.completed} of {round_.count} complete"
                    )
                    + f" in {fmt_seconds(round_.complete_seconds)}; "
                    f"{round_.instances} instances, {round_.duplicates} duplicates"
                ),
                floor=f"all waiting after {fmt_seconds(round_.start_seconds)}",
                ratio="—",
                target="all complete, 0 duplicates "
                + ("✓" if round_.duplicates == 0 and round_.completed == round_.count else "✗"),
                n=f"{round_.completed}/{round_.count}",
            )
        )
        rows.append(
            Row(
                figure=(
                    f"Waiting capacity: refusals, {result.answer_in_flight} answers at once "
                    f"({result.database})"
                ),
                ours=(
                    f"{round_.refused_answers} callbacks refused; "
                    f'{round_.database_locked} "database is locked" in the server log; '
                    f"{round_.client_errors} of the benchmark's own Prefect requests failed"
                ),
                floor="—",
                ratio="—",
                target="(what the database can take)",
                n=str(round_.count),
            )
        )
        if round_.start_cpu_seconds is not None and round_.count:
            cpu_answer = (
                f"{round_.answer_cpu_seconds / round_.count:.1f}"
                if round_.answer_cpu_seconds is not None
                else "?"
            )
            cpu_start = round_.start_cpu_seconds / round_.count
            notes.append(
                f"{round_.count}: CPU per authorization {cpu_start:.1f} s to start and wait, "
                f"{cpu_answer} s to answer and complete (all processes)."
            )
        if round_.final_states:
            states = ", ".join(f"{n} {name}" for name, n in sorted(round_.final_states.items()))
            notes.append(f"{round_.count}: the runs' states at the end: {states}.")
        notes += round_.failures[:5]
    if holdings:
        names = sorted({name for h in holdings for name in h.by_process})
        tables.append(
            (
                "Memory by process while waiting (median RSS)",
                ["waiting", "processes", "total", *names],
                [
                    [
                        f"{h.waiting}" + (" (all suspended)" if h.settled else ""),
                        f"{h.processes:.0f}",
                        fmt_mib(h.rss),
                        *(fmt_mib(h.by_process.get(name)) for name in names),
                    ]
                    for h in holdings
                ],
            )
        )
    if result.skipped:
        notes.append(result.skipped)
    return Section(
        title="Waiting capacity",
        rows=rows,
        notes=notes,
        tables=tables,
        data={
            "in_flight": result.in_flight,
            "answer_in_flight": result.answer_in_flight,
            "database": result.database,
            "hot_slots": result.hot_slots,
            "servers": result.servers,
            "idle": result.idle.__dict__ if result.idle else None,
            "one": one.__dict__ if one else None,
            "one_settled": result.one_settled.__dict__ if result.one_settled else None,
            "rounds": [
                {
                    **r.__dict__,
                    "holding": r.holding.__dict__ if r.holding else None,
                    "settled": r.settled.__dict__ if r.settled else None,
                }
                for r in result.rounds
            ],
            "skipped": result.skipped,
        },
        complete=result.complete,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tooling.benchmarks.waiting", description=__doc__
    )
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--then", type=int, default=1000, help="second round; 0 for none")
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument(
        "--answer-in-flight", type=int, help="answers at once (default: --in-flight)"
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--servers", type=int, default=1, help="processes serving the deployments")
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--poll-frequency", type=int, default=DEFAULT_POLL_FREQUENCY)
    parser.add_argument("--deadline-minutes", type=float, default=45.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    parser.add_argument(
        "--settle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure memory once every hot wait has ended (a hot window each)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the waiting-capacity benchmark alone and print its table."""
    args = parse_args(argv)
    return run_alone(
        "waiting",
        args.deadline_minutes,
        lambda bench, deadline: measure(
            bench,
            count=args.count,
            then=args.then,
            in_flight=args.in_flight,
            budget_minutes=args.budget_minutes,
            deadline=deadline,
            answer_in_flight=args.answer_in_flight,
            settle=args.settle,
        ),
        section,
        poll_frequency=args.poll_frequency,
        minimal=False,
        keep=args.keep,
        database=args.database,
        environment=receiver_limits(args.answer_in_flight or args.in_flight),
        servers=args.servers,
    )


if __name__ == "__main__":
    sys.exit(main())
