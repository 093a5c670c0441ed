"""The benchmark modules import, and the report renders a Markdown table (no timing here)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest

from open_connectors import StateSigner
from tooling.benchmarks.minimal_flow import minimal_state
from tooling.benchmarks.report import (
    Row,
    Section,
    fmt_cpu,
    fmt_mib,
    fmt_ratio,
    fmt_seconds,
    markdown_table,
    render,
)
from tooling.devstack.proctree import children, process_tree, sample_tree

MODULES = [
    "tooling.benchmarks",
    "tooling.benchmarks.__main__",
    "tooling.benchmarks.authorizations",
    "tooling.benchmarks.bare_export",
    "tooling.benchmarks.deadline",
    "tooling.benchmarks.export",
    "tooling.benchmarks.harness",
    "tooling.benchmarks.latency",
    "tooling.benchmarks.machine",
    "tooling.benchmarks.minimal_flow",
    "tooling.benchmarks.minimal_serve",
    "tooling.benchmarks.poll",
    "tooling.benchmarks.report",
    "tooling.benchmarks.waiting",
]


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_modules_import(name: str) -> None:
    importlib.import_module(name)


def test_markdown_table_lines_up_and_escapes_pipes() -> None:
    table = markdown_table(["a", "b"], [["1", "x|y"], ["long value", ""]])
    lines = table.splitlines()
    assert lines[0].startswith("| a ") and lines[1].startswith("| ---")
    assert "x\\|y" in lines[2]
    assert len({len(line) for line in lines}) == 1


def test_render_puts_every_row_in_one_table_with_notes() -> None:
    sections = [
        Section(title="One", rows=[Row("Time to link", "2.00 s", "floor 1.80 s", "1.11x")]),
        Section(title="Two", rows=[Row("Export", "1 records/s")], notes=["a note"], complete=False),
    ]
    text = render(sections, "Machine: test.")
    assert text.startswith("Machine: test.")
    assert "| Time to link" in text and "| Export" in text
    assert "- Two: a note" in text and "- Two: stopped early" in text


def test_formatters() -> None:
    assert fmt_seconds(0.0123) == "12.3 ms"
    assert fmt_seconds(1.5) == "1.50 s"
    assert fmt_seconds(None) == "—"
    assert fmt_ratio(1.234) == "1.23x"
    assert fmt_mib(3 * 1024 * 1024) == "3.0 MiB"
    assert (fmt_cpu(1.234), fmt_cpu(None)) == ("1.23 CPU-s", "—")


def test_ours_is_served_without_the_fork_server_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from deployments.fork_server import SETTING
    from tooling.benchmarks import harness

    started: list[dict[str, str]] = []

    class Started:
        pid = 0

        def stop(self) -> None:
            pass

    def start(
        stack: object, module: str, deployments: object, env: dict[str, str], **_: object
    ) -> Started:
        started.append(env)
        return Started()

    monkeypatch.setattr(harness, "_start_serving", start)
    # The caller's environment turning it off does not turn off the measured default.
    stack = SimpleNamespace(env={"A": "1", SETTING: "0"}, home=tmp_path)
    bench = harness.Bench(stack=stack, poll_frequency=2)  # type: ignore[arg-type]
    bench.serve_ours()
    bench.fork_server = False
    bench.serve_ours()
    assert (started[0][SETTING], started[1][SETTING]) == ("1", "0")
    assert started[1]["A"] == "1" and started[1]["PREFECT_RUNNER_POLL_FREQUENCY"] == "2"


def test_minimal_floor_derives_the_same_state_as_the_project() -> None:
    run_id = uuid4()
    assert minimal_state(run_id, "state-key") == StateSigner("state-key").sign(run_id)


def test_process_tree_reads_this_process() -> None:
    pid = os.getpid()
    assert pid in process_tree([pid])
    assert sample_tree([pid]).rss > 0
    assert isinstance(children(pid), list)


def test_the_hot_path_rows_compare_with_the_suspended_floor_and_path() -> None:
    from tooling.benchmarks.authorizations import Authorization
    from tooling.benchmarks.latency import LatencyResult, section

    def run(kind: str, seconds: float) -> Authorization:
        auth = Authorization(kind, uuid4(), "b", "t", 0.0, link_seconds=3.0)
        auth.instance_seconds = seconds
        return auth

    result = LatencyResult(
        poll_frequency=2,
        ours=[run("ours", 4.0)],
        hot=[run("hot", 0.8)],
        minimal=[run("minimal", 4.0)],
        cpu={"ours": [10.0], "hot": [5.0], "minimal": [8.0]},
    )
    rows = {row.figure: row for row in section(result).rows}
    hot = rows["Time to instance, hot path"]
    assert (hot.ours, hot.ratio) == ("0.80 s", "0.20x") and hot.target.endswith("✓")
    cpu = rows["CPU per authorization, hot path"]
    assert (cpu.ratio, cpu.target) == ("0.50x", "≤ 0.6x ✓")
    # Without a measurement with the fork server off, no row says anything of it.
    assert not any("new interpreter" in figure for figure in rows)
    result.new_interpreter_cpu = {"ours": [40.0, 30.0, 20.0], "hot": [21.0]}
    rows = {row.figure: row for row in section(result).rows}
    new = rows["CPU per authorization, hot path, a new interpreter per run"]
    assert (new.ours, new.ratio, new.n) == ("21.00 CPU-s", "0.70x", "1")
    assert new.floor.endswith("30.00 CPU-s") and new.target.startswith("≤ 0.6x ✗")
    saved = rows["CPU per authorization, suspended path, forked"]
    assert (saved.ours, saved.ratio, saved.n) == ("10.00 CPU-s", "0.33x", "3")
    slow = LatencyResult(
        poll_frequency=2, ours=[run("ours", 4.0)], hot=[run("hot", 1.1)], minimal=[run("m", 4.0)]
    )
    slow_rows = {row.figure: row for row in section(slow).rows}
    assert slow_rows["Time to instance, hot path"].target.endswith("✗")  # over 1.0 s


def test_the_waiting_rows_hold_processes_to_k_plus_the_fixed_ones() -> None:
    from tooling.benchmarks.waiting import Holding, Round, WaitingResult, section

    def holding(waiting: int, processes: float, hot: float) -> Holding:
        return Holding(waiting, processes, 100.0, {}, flow_run_processes=hot)

    result = WaitingResult(in_flight=4, answer_in_flight=200, database="postgresql", hot_slots=4)
    result.idle, result.one = holding(0, 6, 0), holding(1, 7, 1)
    result.rounds = [
        Round(
            count=200,
            waiting=200,
            holding=holding(200, 10, 4),
            completed=200,
            instances=200,
            database_locked=3,
            refused_answers=1,
        )
    ]
    rows = {row.figure: row for row in section(result).rows}
    processes = rows["Waiting capacity: processes with 200 waiting"]
    assert processes.target == "≤ K + fixed = 4 + 6 ✓" and "4 waiting hot" in processes.ours
    refusals = rows["Waiting capacity: refusals, 200 answers at once (postgresql)"]
    assert "1 callbacks refused" in refusals.ours and '3 "database is locked"' in refusals.ours
    result.rounds[0].holding = holding(200, 11, 5)
    rows = {row.figure: row for row in section(result).rows}
    assert rows["Waiting capacity: processes with 200 waiting"].target.endswith("✗")


async def test_the_final_tally_counts_completed_runs_past_a_busy_server() -> None:
    """A server that times out the benchmark's reads is counted, not fatal; states still read."""
    import httpx
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Completed, Failed, Paused

    from tooling.benchmarks import waiting
    from tooling.benchmarks.authorizations import Authorization
    from tooling.benchmarks.waiting import Round, section, tally_final_states

    states = [Completed(), Completed(), Failed(), Paused()]
    runs = [Authorization("ours", uuid4(), f"b{n}", "t", 0.0) for n in range(len(states))]
    by_id = {auth.run_id: state for auth, state in zip(runs, states, strict=True)}
    calls: list[int] = []

    class BusyServer:
        async def read_flow_runs(self, *, flow_run_filter, limit: int) -> list[FlowRun]:
            calls.append(limit)
            if len(calls) % 2:  # every first try of a page times out
                raise httpx.ReadTimeout("the server is busy")
            ids = flow_run_filter.id.any_
            return [FlowRun(id=i, flow_id=uuid4(), state=by_id[i]) for i in ids]

    original = waiting.TALLY_PAGE
    waiting.TALLY_PAGE = 3
    try:
        result = Round(count=4)
        await tally_final_states(BusyServer(), runs, result)  # type: ignore[arg-type]
    finally:
        waiting.TALLY_PAGE = original
    assert calls == [3, 3, 1, 1]
    assert result.completed == 2 and result.client_errors == 2
    assert result.final_states == {"Completed": 2, "Failed": 1, "Paused": 1}
    assert result.failures[0].startswith(f"run {runs[2].run_id} ended Failed")
    rows = {
        row.figure: row for row in section(waiting.WaitingResult(in_flight=4, rounds=[result])).rows
    }
    assert "2 of 4 complete" in rows["Waiting capacity: 4 answered via the receiver"].ours
    refusals = rows["Waiting capacity: refusals, 0 answers at once (sqlite)"]
    assert "2 of the benchmark's own Prefect requests failed" in refusals.ours


async def test_a_server_that_never_answers_leaves_nothing_counted_as_completed() -> None:
    import httpx

    from tooling.benchmarks.authorizations import Authorization
    from tooling.benchmarks.waiting import TALLY_ATTEMPTS, Round, tally_final_states

    class DeadServer:
        async def read_flow_runs(self, **_: object) -> list[object]:
            raise httpx.ConnectError("refused")

    result = Round(count=1)
    runs = [Authorization("ours", uuid4(), "b", "t", 0.0)]
    await tally_final_states(DeadServer(), runs, result)  # type: ignore[arg-type]
    assert result.completed == 0 and result.client_errors == TALLY_ATTEMPTS
    assert any("final states not read" in failure for failure in result.failures)
