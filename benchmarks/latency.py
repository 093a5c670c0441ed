"""Time to link and time to instance, against the minimal-Prefect and bare-httpx floors.

    python -m benchmarks.latency [--reps 7] [--poll-frequency 1] [--think-seconds 1]

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

from benchmarks.authorizations import (
    Authorization,
    BareSandbox,
    answer,
    start_minimal,
    start_ours,
    state_history,
    wait_for_link,
)
from benchmarks.deadline import Deadline, DeadlineReached
from benchmarks.harness import DEFAULT_POLL_FREQUENCY, Bench, run_alone
from benchmarks.report import (
    Row,
    Section,
    fmt_ratio,
    fmt_seconds,
    median,
    ratio,
    verdict,
)
from devstack.runs import wait_for_final

TARGET_RATIO = 1.5
_JITTER = random.Random(20261128)
RUN_TIMEOUT = 180.0
# The phases of one authorization, from the run's state history (wall clock).
LINK_PHASES = ("until a runner picks it up", "process start", "flow until the link")
INSTANCE_PHASES = (
    "receiver resumes",
    "until a runner picks it up",
    "process start",
    "flow until the block",
)


@dataclass
class LatencyResult:
    """The measurements of one latency run.

    Attributes:
        poll_frequency: The runner poll frequency used.
        ours: Our authorizations.
        minimal: The minimal floor's.
        bare_link: Seconds of the bare `oauth/url` calls.
        bare_instance: Seconds of the bare `POST /instances` calls.
        phases: Per kind and phase, the seconds of each repetition.
        failures: What went wrong, if anything.
    """

    poll_frequency: int
    ours: list[Authorization] = field(default_factory=list)
    minimal: list[Authorization] = field(default_factory=list)
    bare_link: list[float] = field(default_factory=list)
    bare_instance: list[float] = field(default_factory=list)
    phases: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    complete: bool = True

    def link(self, kind: str) -> list[float]:
        """Times to link of `ours` or `minimal`."""
        runs = self.ours if kind == "ours" else self.minimal
        return [run.link_seconds for run in runs if run.link_seconds is not None]

    def instance(self, kind: str) -> list[float]:
        """Times to instance of `ours` or `minimal`."""
        runs = self.ours if kind == "ours" else self.minimal
        return [run.instance_seconds for run in runs if run.instance_seconds is not None]


async def authorize_once(
    client: PrefectClient,
    http: httpx.AsyncClient,
    bench: Bench,
    start: Callable[[PrefectClient, Bench], Any],
    *,
    think_seconds: float,
    result: LatencyResult,
) -> Authorization:
    """Run one authorization through and record its phases.

    The run is started, and answered, at a random moment of the runners' poll cycle
    (a uniform delay up to one poll interval), so that neither ours nor the floor
    locks onto a lucky or unlucky phase of its runner's polling.
    """
    await asyncio.sleep(_JITTER.uniform(0, bench.poll_frequency))
    auth: Authorization = await start(client, bench)
    await wait_for_link(client, auth, timeout=RUN_TIMEOUT)
    # A person reads the link meanwhile; the suspended run's process exits.
    await bench.wait_for_idle()
    await asyncio.sleep(think_seconds + _JITTER.uniform(0, bench.poll_frequency))
    await answer(client, http, auth, timeout=RUN_TIMEOUT)
    await wait_for_final(client, auth.run_id, timeout=RUN_TIMEOUT)
    await bench.wait_for_idle()
    _record_phases(result, auth, await state_history(client, auth.run_id))
    return auth


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
    bench: Bench, *, reps: int, think_seconds: float, deadline: Deadline
) -> LatencyResult:
    """Interleave ours and the floors `reps` times, or until the deadline."""
    result = LatencyResult(poll_frequency=bench.poll_frequency)
    bare = BareSandbox.of(bench)
    async with get_client() as client, httpx.AsyncClient(timeout=60) as http:
        await bench.prepare(client)
        # One untimed authorization of each warms the server, the sandbox and the
        # receiver (first imports, first connections, SQLite's first pages).
        try:
            for start in (start_ours, start_minimal):
                await deadline.run(
                    authorize_once(
                        client, http, bench, start, think_seconds=0, result=LatencyResult(0)
                    ),
                    "warm-up",
                )
            for rep in range(reps):
                deadline.check("latency repetitions")
                order = [("ours", start_ours), ("minimal", start_minimal)]
                if rep % 2:
                    order.reverse()
                for kind, start in order:
                    auth = await deadline.run(
                        authorize_once(
                            client, http, bench, start, think_seconds=think_seconds, result=result
                        ),
                        f"{kind} authorization",
                    )
                    (result.ours if kind == "ours" else result.minimal).append(auth)
                result.bare_link.append(await bare.time_oauth_url())
                result.bare_instance.append(await bare.time_create_instance())
        except DeadlineReached as exc:
            result.failures.append(str(exc))
            result.complete = False
    return result


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
    phase_rows = [
        [
            phase,
            fmt_seconds(median(result.phases.get("ours", {}).get(phase, []))),
            fmt_seconds(median(result.phases.get("minimal", {}).get(phase, []))),
        ]
        for phase in [f"link: {p}" for p in LINK_PHASES]
        + [f"instance: {p}" for p in INSTANCE_PHASES]
    ]
    notes = [
        f"runner poll frequency {result.poll_frequency} s; ours and the minimal floor "
        "alternate, one at a time, after one untimed warm-up each; each start and each "
        "answer waits a random part of a poll interval first.",
        *result.failures,
    ]
    return Section(
        title=title,
        rows=rows,
        notes=notes,
        tables=[
            (
                f"Where the time goes (medians, poll {result.poll_frequency} s)",
                ["phase", "ours", "minimal Prefect flow"],
                phase_rows,
            )
        ],
        data=_as_data(result),
        complete=result.complete,
    )


def _as_data(result: LatencyResult) -> dict[str, Any]:
    return {
        "poll_frequency": result.poll_frequency,
        "ours": [asdict(run) | {"run_id": str(run.run_id)} for run in result.ours],
        "minimal": [asdict(run) | {"run_id": str(run.run_id)} for run in result.minimal],
        "bare_link": result.bare_link,
        "bare_instance": result.bare_instance,
        "phases": result.phases,
        "failures": result.failures,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
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
