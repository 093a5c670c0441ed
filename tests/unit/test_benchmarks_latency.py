"""The latency benchmark's loop keeps what it measured and serves the default again on failure.

No stack here: the authorizations, the Prefect client and the bare floors are fakes, so
only `measure`'s own bookkeeping runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

from tooling.benchmarks import latency
from tooling.benchmarks.authorizations import Authorization
from tooling.benchmarks.deadline import Deadline, DeadlineReached
from tooling.benchmarks.harness import (
    PART_DATABASE,
    PART_HELPERS,
    PART_SERVER,
    PART_SERVING,
    Bench,
)
from tooling.benchmarks.latency import LatencyResult
from tooling.devstack.processes import StackError

REPS = 2


class FakeBench:
    """What `measure` asks of a bench: preparation and the fork-server switch, recorded."""

    poll_frequency = 2

    def __init__(self) -> None:
        self.fork_server = True
        self.switches: list[bool] = []

    async def prepare(self, client: Any) -> None:
        return None

    async def use_fork_server(self, on: bool, client: Any) -> None:
        self.switches.append(on)
        self.fork_server = on


def fake_authorizations(
    monkeypatch: pytest.MonkeyPatch, bench: FakeBench, fail_without_fork_server: Exception | None
) -> None:
    """Each authorization records 1 CPU-s; with the fork server off, the second one raises
    `fail_without_fork_server` when it is given."""
    calls_without = 0

    async def authorize_once(
        *_: Any, result: LatencyResult, kind: str, cpu: bool = False, **__: Any
    ) -> Any:
        nonlocal calls_without
        if not bench.fork_server:
            calls_without += 1
            if fail_without_fork_server is not None and calls_without == 2:
                raise fail_without_fork_server
        if cpu:
            result.cpu.setdefault(kind, []).append(1.0)
        return SimpleNamespace(kind=kind, link_seconds=0.1, instance_seconds=0.1)

    async def set_hot_slots(client: Any, slots: int) -> None:
        return None

    @contextlib.asynccontextmanager
    async def get_client() -> AsyncIterator[object]:
        yield object()

    async def timed() -> float:
        return 0.001

    bare = SimpleNamespace(time_oauth_url=timed, time_create_instance=timed)
    monkeypatch.setattr(latency, "authorize_once", authorize_once)
    monkeypatch.setattr(latency, "set_hot_slots", set_hot_slots)
    monkeypatch.setattr(latency, "get_client", get_client)
    monkeypatch.setattr(latency.BareSandbox, "of", staticmethod(lambda _bench: bare))


async def measure(bench: FakeBench) -> LatencyResult:
    return await latency.measure(
        bench,  # type: ignore[arg-type]
        reps=REPS,
        think_seconds=0,
        deadline=Deadline(300),
    )


async def test_both_comparisons_are_measured_and_the_fork_server_is_on_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = FakeBench()
    fake_authorizations(monkeypatch, bench, None)
    result = await measure(bench)
    assert result.complete and result.failures == []
    assert len(result.cpu["hot"]) == len(result.cpu["ours"]) == REPS
    # The first round with the fork server off warms the new serving process, uncounted.
    assert len(result.new_interpreter_cpu["hot"]) == len(result.new_interpreter_cpu["ours"]) == REPS
    assert bench.switches == [False, True] and bench.fork_server


async def test_a_failure_with_the_fork_server_off_keeps_the_forked_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = FakeBench()
    fake_authorizations(monkeypatch, bench, StackError("the run did not end in time"))
    result = await measure(bench)
    assert not result.complete
    assert result.failures == ["CPU with a new interpreter per run: the run did not end in time"]
    assert len(result.cpu["hot"]) == REPS and len(result.runs("hot")) == REPS
    assert bench.switches == [False, True] and bench.fork_server


async def test_the_deadline_with_the_fork_server_off_serves_the_default_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = FakeBench()
    fake_authorizations(monkeypatch, bench, DeadlineReached("out of time"))
    result = await measure(bench)
    assert not result.complete and result.failures == ["out of time"]
    assert bench.switches == [False, True] and bench.fork_server


async def test_the_fork_server_is_on_again_when_the_hot_slots_cannot_be_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = FakeBench()
    fake_authorizations(monkeypatch, bench, None)

    async def refused(client: Any, slots: int) -> None:
        raise StackError("503 Service Unavailable")

    monkeypatch.setattr(latency, "set_hot_slots", refused)
    with pytest.raises(StackError):
        await measure(bench)
    assert bench.switches == [False, True] and bench.fork_server


@pytest.mark.parametrize("kind", ["ours", "hot"])
def test_each_path_is_split_into_its_phases_from_the_runs_states(kind: str) -> None:
    # Suspended: a runner starts a new process after the resume. Hot: the waiting
    # process takes the resumed run back itself (Pending, Running), with no process start.
    auth = SimpleNamespace(
        kind=kind, started_at=0.0, link_seconds=3.0, callback_at=10.0, instance_seconds=2.0
    )
    start = [("Pending", 0.5), ("Running", 1.0), ("Paused", 2.5)]
    if kind == "hot":
        answer = [("Resuming", 10.1), ("Pending", 10.15), ("Running", 10.2)]
        expected = {"receiver resumes": 0.1, "taken back in process": 0.1}
    else:
        answer = [("Resuming", 10.1), ("Pending", 11.0), ("Running", 11.5)]
        expected = {"receiver resumes": 0.1, "until a runner picks it up": 0.9}
    result = LatencyResult(poll_frequency=2)
    latency._record_phases(result, auth, start + answer)  # type: ignore[arg-type]
    phases = result.phases[kind]
    assert phases["link: until a runner picks it up"] == [0.5]
    for phase, seconds in expected.items():
        assert phases[f"instance: {phase}"] == [pytest.approx(seconds)]
    assert phases["instance: flow until the block"] == [
        pytest.approx(12.0 - 10.2 if kind == "hot" else 12.0 - 11.5)
    ]


def test_the_cpu_is_shown_by_part_of_the_stack_beside_the_total() -> None:
    # Whose work the hot path saves: the server's requests, or the runs' processes.
    result = LatencyResult(poll_frequency=2)
    for kind in ("ours", "hot", "minimal"):
        result.runs(kind).append(Authorization(kind, uuid4(), "block", "type", 0.0))
    result.cpu = {"ours": [4.0, 4.2, 4.4], "hot": [3.0, 3.1, 3.2], "minimal": [9.0]}
    result.cpu_parts = {
        kind: {
            PART_SERVER: [share * 0.6 for share in result.cpu[kind]],
            PART_SERVING: [share * 0.4 for share in result.cpu[kind]],
            PART_DATABASE: [0.0 for _ in result.cpu[kind]],  # SQLite: no such process
        }
        for kind in ("ours", "hot")
    }
    tables = {title: (header, rows) for title, header, rows in latency.section(result).tables}
    header, rows = next(t for title, t in tables.items() if title.startswith("Where the CPU"))
    assert header == ["process", "ours (suspended)", "ours (hot)"]
    assert rows == [
        [PART_SERVER, "2.52 CPU-s", "1.86 CPU-s"],
        [PART_SERVING, "1.68 CPU-s", "1.24 CPU-s"],
        ["all processes (median of the totals)", "4.20 CPU-s", "3.10 CPU-s"],
    ]


def test_the_parts_of_the_stack_are_every_process_the_benchmark_started() -> None:
    def process(pid: int, running: bool = True) -> Any:
        return SimpleNamespace(pid=pid, is_running=lambda: running)

    stack = SimpleNamespace(
        prefect=SimpleNamespace(process=process(1)),
        sandbox=SimpleNamespace(process=process(2)),
        receiver=SimpleNamespace(process=process(3)),
        postgresql=None,
    )
    bench = Bench(stack=stack, poll_frequency=2, ours=process(4), minimal=process(5, False))  # type: ignore[arg-type]
    bench.more_ours.append(process(6))
    bench.extra.append(process(7))
    assert bench.parts() == {
        PART_SERVER: [1],
        PART_SERVING: [4, 6],
        PART_HELPERS: [2, 3, 7],
        PART_DATABASE: [],
    }
    assert sorted(bench.roots()) == [1, 2, 3, 4, 6, 7]
