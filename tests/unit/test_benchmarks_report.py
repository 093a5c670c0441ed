"""The benchmark modules import, and the report renders a Markdown table (no timing here)."""

from __future__ import annotations

import importlib
import os
from uuid import uuid4

import pytest

from benchmarks.minimal_flow import minimal_state
from benchmarks.report import Row, Section, fmt_mib, fmt_ratio, fmt_seconds, markdown_table, render
from devstack.proctree import children, process_tree, sample_tree
from open_connectors import derive_state

MODULES = [
    "benchmarks",
    "benchmarks.__main__",
    "benchmarks.authorizations",
    "benchmarks.bare_export",
    "benchmarks.deadline",
    "benchmarks.export",
    "benchmarks.harness",
    "benchmarks.latency",
    "benchmarks.machine",
    "benchmarks.minimal_flow",
    "benchmarks.minimal_serve",
    "benchmarks.poll",
    "benchmarks.report",
    "benchmarks.waiting",
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


def test_minimal_floor_derives_the_same_state_as_the_project() -> None:
    run_id = uuid4()
    assert minimal_state(run_id, "app-secret") == derive_state(run_id, "app-secret")


def test_process_tree_reads_this_process() -> None:
    pid = os.getpid()
    assert pid in process_tree([pid])
    assert sample_tree([pid]).rss > 0
    assert isinstance(children(pid), list)
