"""Time to link and time to instance, against the minimal-Prefect and bare-httpx floors.

    python -m tooling.benchmarks.latency [--reps 7] [--poll-frequency 1] [--think-seconds 1]

Every repetition runs one authorization of ours and one of the minimal floor, one
after the other (the order alternates), then the two bare httpx calls:

- time to link: from the run's creation request (Prefect API) until the consent
  link is readable in the paused run's resume form;
- time to instance: from sending the redirect to the callback receiver until the
  saved block exists (ours: the `ConnectorInstance` block; the floor: its marker
  block).

Before the callback the benchmark waits, as a person reading the link would,
until the suspended run's process has exited, then `--think-seconds` more. Each
authorization yields one figure of each kind, so both are measured here.

CPU per authorization is measured on authorizations of their own, one after each
timed one, during which the benchmark looks at the run once a second instead of
every 50 ms (its own looks would otherwise cost the server more than the run does).
Then the serving process starts again with the fork server off (`OC_FORK_SERVER=0`),
and both paths' CPU is measured once more with a new interpreter per run process, as
Prefect's runner and process workers start runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.exceptions import ObjectNotFound

from flows.steps.hot_slots import HOT_WAIT_LIMIT
from flows.steps.hot_wait import HotWaitSettings
from tooling.benchmarks.authorizations import (
    Authorization,
    BareSandbox,
    answer,
    start_minimal,
    start_ours,
    state_history,
    wait_for_link,
)
from tooling.benchmarks.deadline import Deadline, DeadlineReached
from tooling.benchmarks.harness import DEFAULT_POLL_FREQUENCY, Bench, run_alone
from tooling.benchmarks.report import (
    Row,
    Section,
    fmt_cpu,
    fmt_ratio,
    fmt_seconds,
    median,
    ratio,
    verdict,
)
from tooling.devstack.proctree import sample_tree
from tooling.devstack.runs import wait_for_final

TARGET_RATIO = 1.5
# The hot path's targets (issue: hot time to instance ≤ 1.0 s and ≤ 0.3x the suspended
# floor; CPU per authorization ≤ 0.6x the suspended path).
HOT_SECONDS_TARGET = 1.0
HOT_FLOOR_RATIO_TARGET = 0.3
HOT_CPU_RATIO_TARGET = 0.6
# The product's default number of hot slots, restored after the benchmark.
HOT_SLOTS = HotWaitSettings().limit
_JITTER = random.Random(20261128)
RUN_TIMEOUT = 180.0
# How often the benchmark looks at a run whose CPU it measures (see `authorize_once`).
CPU_LOOK_SECONDS = 1.0
# The phases of one authorization, from the run's state history (wall clock).
LINK_PHASES = ("until a runner picks it up", "process start", "flow until the link")
INSTANCE_PHASES = (
    "receiver resumes",
    "until a runner picks it up",
    "process start",
    "flow until the block",
)
# The hot path's own phase, after the receiver's resume: its waiting process claims the run.
TAKEN_BACK = "taken back in process"


@dataclass
class LatencyResult:
    """The measurements of one latency run.

    Attributes:
        poll_frequency: The runner poll frequency used.
        ours: Our authorizations on the suspended path (no hot slot free).
        hot: Ours answered inside the hot window (the run waits in its own process).
        minimal: The minimal floor's.
        bare_link: Seconds of the bare `oauth/url` calls.
        bare_instance: Seconds of the bare `POST /instances` calls.
        phases: Per kind and phase, the seconds of each repetition.
        cpu: CPU-seconds per authorization, by kind.
        cpu_parts: The same by kind and part of the stack (`Bench.parts`).
        new_interpreter_cpu: The same for `ours` and `hot` with the fork server off.
        failures: What went wrong, if anything.
    """

    poll_frequency: int
    ours: list[Authorization] = field(default_factory=list)
    hot: list[Authorization] = field(default_factory=list)
    minimal: list[Authorization] = field(default_factory=list)
    bare_link: list[float] = field(default_factory=list)
    bare_instance: list[float] = field(default_factory=list)
    phases: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    cpu_parts: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    new_interpreter_cpu: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    complete: bool = True

    def runs(self, kind: str) -> list[Authorization]:
        """The authorizations of `ours` (suspended), `hot` or `minimal`."""
        return {"ours": self.ours, "hot": self.hot, "minimal": self.minimal}[kind]

    def link(self, kind: str) -> list[float]:
        """Times to link of `ours`, `hot` or `minimal`."""
        return [run.link_seconds for run in self.runs(kind) if run.link_seconds is not None]

    def instance(self, kind: str) -> list[float]:
        """Times to instance of `ours`, `hot` or `minimal`."""
        runs = self.runs(kind)
        return [run.instance_seconds for run in runs if run.instance_seconds is not None]


async def authorize_once(
    client: PrefectClient,
    http: httpx.AsyncClient,
    bench: Bench,
    start: Callable[[PrefectClient, Bench], Any],
    *,
    think_seconds: float,
    result: LatencyResult,
    kind: str,
    cpu: bool = False,
) -> Authorization:
    """Run one authorization through and record its times and phases, or the CPU it cost.

    The run is started, and answered, at a random moment of the runners' poll cycle
    (a uniform delay up to one poll interval), so that neither ours nor the floor
    locks onto a lucky or unlucky phase of its runner's polling. `kind` is `ours`
    (the suspended path: the hot-wait limit has no slot), `hot` (one slot free: the
    answer comes while the run waits in its own process) or `minimal`.

    Times need the benchmark to look often (every 50 ms); so many looks would cost the
    server more than a run's own requests. So with `cpu` the benchmark looks once every
    `CPU_LOOK_SECONDS` and records the CPU only (the caller adds the authorization to
    its figures only for times).
    """
    if kind != "minimal":
        await set_hot_slots(client, HOT_SLOTS if kind == "hot" else 0)
    look = {"poll_seconds": CPU_LOOK_SECONDS} if cpu else {}
    await asyncio.sleep(_JITTER.uniform(0, bench.poll_frequency))
    cpu_before = _cpu_by_part(bench)
    auth: Authorization = await start(client, bench)
    auth.kind = kind
    await wait_for_link(client, auth, timeout=RUN_TIMEOUT, **look)
    if kind != "hot":
        # A person reads the link meanwhile; the suspended run's process exits.
        await bench.wait_for_idle()
    await asyncio.sleep(think_seconds + _JITTER.uniform(0, bench.poll_frequency))
    await answer(client, http, auth, timeout=RUN_TIMEOUT, **look)
    await wait_for_final(client, auth.run_id, timeout=RUN_TIMEOUT, **look)
    await bench.wait_for_idle()
    if cpu:
        # Everything the stack spent on it: server, receiver, sandbox, runner, run processes.
        spent = {part: seconds - cpu_before[part] for part, seconds in _cpu_by_part(bench).items()}
        result.cpu.setdefault(kind, []).append(sum(spent.values()))
        parts = result.cpu_parts.setdefault(kind, {})
        for part, seconds in spent.items():
            parts.setdefault(part, []).append(seconds)
    else:
        _record_phases(result, auth, await state_history(client, auth.run_id))
    return auth


def _cpu_by_part(bench: Bench) -> dict[str, float]:
    """CPU-seconds so far of each part of the stack (a part that is not there: 0)."""
    return {part: sample_tree(pids).cpu_seconds for part, pids in bench.parts().items()}


async def set_hot_slots(client: PrefectClient, slots: int) -> None:
    """Set the hot-wait limit (0: every run suspends at once), creating it if needed."""
    try:
        await client.update_global_concurrency_limit(
            HOT_WAIT_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots)
        )
    except ObjectNotFound:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=HOT_WAIT_LIMIT, limit=slots, active=True)
        )


def _record_phases(
    result: LatencyResult, auth: Authorization, history: Sequence[tuple[str, float]]
) -> None:
    """Split the two figures into phases from the run's states."""

    def first(name: str, after: float) -> float | None:
        return next((at for state, at in history if state == name and at >= after), None)

    phases = result.phases.setdefault(auth.kind, {})
    pending = first("Pending", auth.started_at)
    running = first("Running", pending or auth.started_at)
    if pending and running and auth.link_seconds is not None:
        link_end = auth.started_at + auth.link_seconds
        for phase, seconds in zip(
            LINK_PHASES,
            (pending - auth.started_at, running - pending, link_end - running),
            strict=True,
        ):
            phases.setdefault(f"link: {phase}", []).append(seconds)
    callback = auth.callback_at
    if callback is None or auth.instance_seconds is None:
        return
    if auth.kind == "hot":
        # No new process: the waiting process takes the resumed run back (Pending, Running).
        resuming = first("Resuming", callback)
        running = first("Running", resuming or callback)
        if resuming and running:
            phases.setdefault("instance: receiver resumes", []).append(resuming - callback)
            phases.setdefault(f"instance: {TAKEN_BACK}", []).append(running - resuming)
            block_end = callback + auth.instance_seconds
            phases.setdefault("instance: flow until the block", []).append(block_end - running)
        return
    resuming = first("Resuming", callback)
    pending = first("Pending", resuming or callback)
    running = first("Running", pending or callback)
    if resuming and pending and running:
        block_end = callback + auth.instance_seconds
        for phase, seconds in zip(
            INSTANCE_PHASES,
            (resuming - callback, pending - resuming, running - pending, block_end - running),
            strict=True,
        ):
            phases.setdefault(f"instance: {phase}", []).append(seconds)


async def measure(
    bench: Bench,
    *,
    reps: int,
    think_seconds: float,
    deadline: Deadline,
    hot: bool = True,
    cpu: bool = True,
    new_interpreters: bool = True,
) -> LatencyResult:
    """Interleave ours (suspended, and hot unless `hot` is False) and the floors `reps` times.

    With `cpu`, each timed authorization is followed by one of the same kind whose CPU
    is measured (see `authorize_once`); with `new_interpreters` too (and `hot`), both
    paths' CPU is measured `reps` times more with the fork server off.
    """
    result = LatencyResult(poll_frequency=bench.poll_frequency)
    bare = BareSandbox.of(bench)
    kinds: list[tuple[str, Callable[[PrefectClient, Bench], Any]]] = [
        ("ours", start_ours),
        *([("hot", start_ours)] if hot else []),
        ("minimal", start_minimal),
    ]
    async with get_client() as client, httpx.AsyncClient(timeout=60) as http:
        await bench.prepare(client)
        # One untimed authorization of each warms the server, the sandbox and the
        # receiver (first imports, first connections, SQLite's first pages).
        try:
            for kind, start in kinds:
                await deadline.run(
                    authorize_once(
                        client,
                        http,
                        bench,
                        start,
                        think_seconds=0,
                        result=LatencyResult(0),
                        kind=kind,
                    ),
                    "warm-up",
                )
            for rep in range(reps):
                deadline.check("latency repetitions")
                # Every kind goes first, in the middle and last equally often.
                order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
                for kind, start in order:
                    # The timed authorization, then (with `cpu`) one whose CPU is measured.
                    for measuring_cpu in (False, True) if cpu else (False,):
                        auth = await deadline.run(
                            authorize_once(
                                client,
                                http,
                                bench,
                                start,
                                think_seconds=think_seconds,
                                result=result,
                                kind=kind,
                                cpu=measuring_cpu,
                            ),
                            f"{kind} authorization{' (CPU)' if measuring_cpu else ''}",
                        )
                        if not measuring_cpu:
                            result.runs(kind).append(auth)
                result.bare_link.append(await bare.time_oauth_url())
                result.bare_instance.append(await bare.time_create_instance())
            if cpu and hot and new_interpreters:
                try:
                    await _measure_new_interpreters(
                        client,
                        http,
                        bench,
                        reps=reps,
                        think_seconds=think_seconds,
                        deadline=deadline,
                        result=result,
                    )
                except DeadlineReached:
                    raise
                except Exception as exc:  # keeps the figures measured above
                    result.failures.append(f"CPU with a new interpreter per run: {exc}")
                    result.complete = False
        except DeadlineReached as exc:
            result.failures.append(str(exc))
            result.complete = False
        finally:
            try:
                await set_hot_slots(client, HOT_SLOTS)
            finally:
                await bench.use_fork_server(True, client)
    return result


async def _measure_new_interpreters(
    client: PrefectClient,
    http: httpx.AsyncClient,
    bench: Bench,
    *,
    reps: int,
    think_seconds: float,
    deadline: Deadline,
    result: LatencyResult,
) -> None:
    """Both paths' CPU per authorization with a new interpreter per run process.

    Ours is served again with the fork server off (`OC_FORK_SERVER=0`): each run's
    process then costs what Prefect's own process start costs, as with Prefect's runner
    or a process worker, so the suspended path pays for two and the hot path for one.
    The first round warms the new serving process up and is not counted.
    """
    await bench.use_fork_server(False, client)
    # Its `cpu` is `result.new_interpreter_cpu` itself: `authorize_once` records there.
    counted = LatencyResult(bench.poll_frequency, cpu=result.new_interpreter_cpu)
    kinds = ["ours", "hot"]
    for rep in range(reps + 1):
        deadline.check("CPU repetitions with a new interpreter per run")
        for kind in kinds if rep % 2 else kinds[::-1]:
            await deadline.run(
                authorize_once(
                    client,
                    http,
                    bench,
                    start_ours,
                    think_seconds=think_seconds,
                    result=counted if rep else LatencyResult(0),
                    kind=kind,
                    cpu=True,
                ),
                f"{kind} authorization, new interpreters (CPU)",
            )


def section(result: LatencyResult, *, title: str = "Latency") -> Section:
    """The table rows, the phase table and the notes of a latency run."""
    rows: list[Row] = []
    for figure, ours, floor, bare, bare_name in (
        (
            "Time to link",
            result.link("ours"),
            result.link("minimal"),
            result.bare_link,
            "bare httpx `oauth/url`",
        ),
        (
            "Time to instance",
            result.instance("ours"),
            result.instance("minimal"),
            result.bare_instance,
            "bare httpx `POST /instances`",
        ),
    ):
        ours_median, floor_median, bare_median = median(ours), median(floor), median(bare)
        floor_ratio = ratio(ours_median, floor_median)
        rows.append(
            Row(
                figure=f"{figure} (poll {result.poll_frequency} s)",
                ours=fmt_seconds(ours_median),
                floor=f"minimal Prefect flow {fmt_seconds(floor_median)}",
                ratio=fmt_ratio(floor_ratio),
                target=f"≤ {TARGET_RATIO}x {verdict(floor_ratio, TARGET_RATIO)}",
                n=str(len(ours)),
            )
        )
        rows.append(
            Row(
                figure=f"{figure}: bare floor",
                ours=fmt_seconds(ours_median),
                floor=f"{bare_name} {fmt_seconds(bare_median)}",
                ratio=fmt_ratio(ratio(ours_median, bare_median)),
                target="(shows Prefect's share)",
                n=str(len(bare)),
            )
        )
    rows += _hot_rows(result)
    kinds = ["ours", *(["hot"] if result.hot else []), "minimal"]
    phase_rows = [
        [phase, *(fmt_seconds(median(result.phases.get(k, {}).get(phase, []))) for k in kinds)]
        for phase in [f"link: {p}" for p in LINK_PHASES]
        + [f"instance: {p}" for p in (INSTANCE_PHASES[0], TAKEN_BACK, *INSTANCE_PHASES[1:])]
    ]
    notes = [
        f"runner poll frequency {result.poll_frequency} s; ours (suspended, and hot) and the "
        "minimal floor alternate, one at a time, after one untimed warm-up each; each start "
        "and each answer waits a random part of a poll interval first.",
        "ours (suspended): the hot-wait limit set to 0 slots, so the run suspends at once and "
        "a new process finishes it; ours (hot): a slot free, answered while the run waits "
        "in its own process (the product's default for answers within "
        f"{HotWaitSettings().seconds:.0f} s).",
        "CPU per authorization: user + system CPU of every process of the stack (server, "
        "receiver, sandbox, runner and the run's processes) from the start request until "
        "the run's last process has exited; it includes the server's idle work meanwhile. "
        "Measured on authorizations of their own, after each timed one, during which the "
        f"benchmark looks at the run every {CPU_LOOK_SECONDS:g} s instead of every 50 ms "
        "(looks that often would cost the server more than the run's own requests).",
        *(
            [
                "A new interpreter per run: the same CPU measurement with ours served again "
                "with the fork server off (`OC_FORK_SERVER=0`), so that each run's process "
                "starts as Prefect's runner and process workers start it; after one "
                "uncounted warm-up of each path."
            ]
            if result.new_interpreter_cpu
            else []
        ),
        *result.failures,
    ]
    return Section(
        title=title,
        rows=rows,
        notes=notes,
        tables=[
            (
                f"Where the time goes (medians, poll {result.poll_frequency} s)",
                ["phase", *(KIND_NAMES[kind] for kind in kinds)],
                phase_rows,
            ),
            *_cpu_parts_table(result, kinds),
        ],
        data=_as_data(result),
        complete=result.complete,
    )


KIND_NAMES = {"ours": "ours (suspended)", "hot": "ours (hot)", "minimal": "minimal Prefect flow"}


def _cpu_parts_table(
    result: LatencyResult, kinds: list[str]
) -> list[tuple[str, list[str], list[list[str]]]]:
    """CPU per authorization by part of the stack: whose work each path saves or costs.

    Each part's median of its own; they need not add up to the total's median.
    """
    measured = [kind for kind in kinds if result.cpu_parts.get(kind)]
    if not measured:
        return []
    parts = list(dict.fromkeys(part for kind in measured for part in result.cpu_parts[kind]))
    rows = [
        [part, *(fmt_cpu(median(result.cpu_parts[kind].get(part, []))) for kind in measured)]
        for part in parts
        if any(any(result.cpu_parts[kind].get(part, [])) for kind in measured)
    ]
    total = [fmt_cpu(median(result.cpu[kind])) for kind in measured]
    rows.append(["all processes (median of the totals)", *total])
    return [
        (
            "Where the CPU goes (medians, CPU-s per authorization; ours forked by the fork server)",
            ["process", *(KIND_NAMES[kind] for kind in measured)],
            rows,
        )
    ]


def _hot_rows(result: LatencyResult) -> list[Row]:
    """The hot path against the suspended floor and our suspended path, time and CPU."""
    if not result.hot:
        return []
    hot = median(result.instance("hot"))
    floor = median(result.instance("minimal"))
    suspended = median(result.instance("ours"))
    floor_ratio = ratio(hot, floor)
    met = verdict(hot, HOT_SECONDS_TARGET) == verdict(floor_ratio, HOT_FLOOR_RATIO_TARGET) == "✓"
    hot_cpu, suspended_cpu = median(result.cpu.get("hot", [])), median(result.cpu.get("ours", []))
    minimal_cpu = median(result.cpu.get("minimal", []))
    cpu_ratio = ratio(hot_cpu, suspended_cpu)
    return [
        Row(
            figure="Time to instance, hot path",
            ours=fmt_seconds(hot),
            floor=f"minimal suspended flow {fmt_seconds(floor)}",
            ratio=fmt_ratio(floor_ratio),
            target=(
                f"≤ {HOT_SECONDS_TARGET:.1f} s and ≤ {HOT_FLOOR_RATIO_TARGET}x "
                f"{'✓' if met else '✗'}"
            ),
            n=str(len(result.instance("hot"))),
        ),
        Row(
            figure="Time to instance, hot against our suspended path",
            ours=fmt_seconds(hot),
            floor=f"ours suspended {fmt_seconds(suspended)}",
            ratio=fmt_ratio(ratio(hot, suspended)),
            target="(what the hot wait saves)",
            n=str(len(result.instance("hot"))),
        ),
        Row(
            figure="CPU per authorization, hot path",
            ours=fmt_cpu(hot_cpu),
            floor=f"ours suspended {fmt_cpu(suspended_cpu)}",
            ratio=fmt_ratio(cpu_ratio),
            target=f"≤ {HOT_CPU_RATIO_TARGET}x {verdict(cpu_ratio, HOT_CPU_RATIO_TARGET)}",
            n=str(len(result.cpu.get("hot", []))),
        ),
        Row(
            figure="CPU per authorization, suspended path",
            ours=fmt_cpu(suspended_cpu),
            floor=f"minimal flow {fmt_cpu(minimal_cpu)}",
            ratio=fmt_ratio(ratio(suspended_cpu, minimal_cpu)),
            target="(Prefect's floor)",
            n=str(len(result.cpu.get("ours", []))),
        ),
        *_new_interpreter_rows(result, suspended_cpu),
    ]


def _new_interpreter_rows(result: LatencyResult, forked_suspended: float | None) -> list[Row]:
    """Both paths' CPU with a new interpreter per run, and what the fork server saves."""
    measured = result.new_interpreter_cpu
    if not measured:
        return []
    hot, suspended = median(measured.get("hot", [])), median(measured.get("ours", []))
    cpu_ratio = ratio(hot, suspended)
    return [
        Row(
            figure="CPU per authorization, hot path, a new interpreter per run",
            ours=fmt_cpu(hot),
            floor=f"ours suspended, a new interpreter per run {fmt_cpu(suspended)}",
            ratio=fmt_ratio(cpu_ratio),
            target=(
                f"≤ {HOT_CPU_RATIO_TARGET}x {verdict(cpu_ratio, HOT_CPU_RATIO_TARGET)} "
                "(`OC_FORK_SERVER=0`, not the default)"
            ),
            n=str(len(measured.get("hot", []))),
        ),
        Row(
            figure="CPU per authorization, suspended path, forked",
            ours=fmt_cpu(forked_suspended),
            floor=f"a new interpreter per run {fmt_cpu(suspended)}",
            ratio=fmt_ratio(ratio(forked_suspended, suspended)),
            target="(what the fork server saves)",
            n=str(len(measured.get("ours", []))),
        ),
    ]


def _as_data(result: LatencyResult) -> dict[str, Any]:
    return {
        "poll_frequency": result.poll_frequency,
        "ours": [asdict(run) | {"run_id": str(run.run_id)} for run in result.ours],
        "hot": [asdict(run) | {"run_id": str(run.run_id)} for run in result.hot],
        "minimal": [asdict(run) | {"run_id": str(run.run_id)} for run in result.minimal],
        "cpu": result.cpu,
        "cpu_parts": result.cpu_parts,
        "new_interpreter_cpu": result.new_interpreter_cpu,
        "bare_link": result.bare_link,
        "bare_instance": result.bare_instance,
        "phases": result.phases,
        "failures": result.failures,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tooling.benchmarks.latency", description=__doc__
    )
    parser.add_argument("--reps", type=int, default=7, help="repetitions (default 7)")
    parser.add_argument("--poll-frequency", type=int, default=DEFAULT_POLL_FREQUENCY)
    parser.add_argument("--think-seconds", type=float, default=1.0)
    parser.add_argument("--deadline-minutes", type=float, default=20.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the latency benchmark alone and print its table."""
    args = parse_args(argv)
    return run_alone(
        "latency",
        args.deadline_minutes,
        lambda bench, deadline: measure(
            bench, reps=args.reps, think_seconds=args.think_seconds, deadline=deadline
        ),
        section,
        poll_frequency=args.poll_frequency,
        keep=args.keep,
    )


if __name__ == "__main__":
    sys.exit(main())
