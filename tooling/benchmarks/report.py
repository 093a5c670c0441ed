"""Figures, medians, ratios and the Markdown tables the benchmarks print."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def ratio(ours: float | None, floor: float | None) -> float | None:
    """`ours / floor`, or None when either is missing or the floor is zero."""
    if ours is None or floor is None or floor == 0:
        return None
    return ours / floor


def fmt_seconds(value: float | None) -> str:
    """`1.23 s`, `45 ms` or `—`."""
    if value is None:
        return "—"
    if value < 0.1:
        return f"{value * 1000:.1f} ms"
    if value < 100:
        return f"{value:.2f} s"
    return f"{value:.0f} s"


def fmt_ratio(value: float | None) -> str:
    """`1.23x` or `—`."""
    return "—" if value is None else f"{value:.2f}x"


def fmt_cpu(value: float | None) -> str:
    """`1.23 CPU-s` or `—`."""
    return "—" if value is None else f"{value:.2f} CPU-s"


def fmt_mib(value: float | None) -> str:
    """Bytes as `123.4 MiB`, or `—`."""
    return "—" if value is None else f"{value / MIB:.1f} MiB"


def fmt_rate(value: float | None, unit: str = "records/s") -> str:
    """`12,345 records/s` or `—`."""
    return "—" if value is None else f"{value:,.0f} {unit}"


def verdict(value: float | None, limit: float) -> str:
    """`✓` when `value <= limit`, `✗` when above, `—` when unknown."""
    if value is None:
        return "—"
    return "✓" if value <= limit else "✗"


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    Attributes:
        figure: What is measured, e.g. `Time to link`.
        ours: Our median (formatted).
        floor: The floor it is compared with and its median (formatted).
        ratio: Ours over the floor (formatted).
        target: The target and whether it is met, e.g. `≤ 1.5x ✓`.
        n: How many measurements the medians are of.
    """

    figure: str
    ours: str
    floor: str = "—"
    ratio: str = "—"
    target: str = ""
    n: str = ""


@dataclass
class Section:
    """What one benchmark reports.

    Attributes:
        title: The benchmark's name.
        rows: Its lines of the main table.
        notes: Sentences printed under the tables (settings, elapsed times, caveats).
        tables: Extra tables as `(title, header, rows)`.
        data: The raw measurements, for the JSON report.
        complete: False when the deadline or a failure cut it short.
    """

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    complete: bool = True


HEADER = ["figure", "ours (median)", "floor (median)", "ratio", "target", "n"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns line up in plain text too."""
    cells = [[_cell(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = (value.ljust(width) for value, width in zip(row, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    separator = "| " + " | ".join("-" * max(3, width) for width in widths) + " |"
    return "\n".join([line(cells[0]), separator, *(line(row) for row in cells[1:])])


def render(sections: Sequence[Section], machine: str = "") -> str:
    """The whole report: the machine, the main table, extra tables and notes."""
    parts: list[str] = []
    if machine:
        parts.append(machine)
    rows = [
        [row.figure, row.ours, row.floor, row.ratio, row.target, row.n]
        for section in sections
        for row in section.rows
    ]
    if rows:
        parts.append(markdown_table(HEADER, rows))
    for section in sections:
        for title, header, extra in section.tables:
            parts.append(f"**{title}**\n\n{markdown_table(header, extra)}")
    notes = [
        f"- {section.title}: {note}"
        for section in sections
        for note in (
            *section.notes,
            *([] if section.complete else ["stopped early (deadline or failure); partial."]),
        )
    ]
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts) + "\n"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
