"""A flow-run process's output once its reader is gone."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flows.steps.process_output import silence_unread_output


def test_only_a_stream_into_a_pipe_nobody_reads_is_pointed_at_the_null_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Rich also points `sys.stdout` at the null device as it ends: not the test's own.
    monkeypatch.setattr(sys, "stdout", (tmp_path / "stdout").open("w"))
    orphaned_read, orphaned_write = os.pipe()
    read, write = os.pipe()
    os.close(orphaned_read)  # the worker that read it is gone
    orphaned, alive = os.fdopen(orphaned_write, "w"), os.fdopen(write, "w")
    try:
        # What Prefect's console logs would meet: Rich ends the process on it.
        with pytest.raises(SystemExit):
            Console(file=orphaned).print("a console log")
        assert silence_unread_output((orphaned, alive)) == [orphaned_write]
        Console(file=orphaned).print("a console log")
        orphaned.flush()
        alive.write("kept")
        alive.flush()
        assert os.read(read, 16) == b"kept"
    finally:
        for stream in (orphaned, alive, sys.stdout):
            stream.close()
        os.close(read)


def test_streams_without_a_descriptor_are_left_alone() -> None:
    assert silence_unread_output((io.StringIO(),)) == []
