"""Processes, memory and CPU of process trees, read from /proc (Linux only).

The benchmarks use it to count what the stack holds: every process it started and
every descendant (flow run subprocesses, the server's workers), their resident
memory, their peak memory and the CPU time they used. Reading /proc costs well
under a millisecond per process, so sampling a few times a second disturbs nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessInfo:
    """One process as /proc shows it at one moment.

    Attributes:
        pid: The process id.
        ppid: Its parent's id.
        rss: Resident memory in bytes.
        cpu_seconds: User plus system CPU time it used so far.
        children_cpu_seconds: CPU time of its children that exited and were reaped.
    """

    pid: int
    ppid: int
    rss: int
    cpu_seconds: float
    children_cpu_seconds: float


def read_process(pid: int) -> ProcessInfo | None:
    """The process's parent, memory and CPU time; None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
        statm = (PROC / str(pid) / "statm").read_text().split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = [int(value) for value in fields[11:15]]  # utime stime cutime cstime
    return ProcessInfo(
        pid=pid,
        ppid=int(fields[1]),
        rss=int(statm[1]) * PAGE_SIZE,
        cpu_seconds=(ticks[0] + ticks[1]) / CLOCK_TICKS,
        children_cpu_seconds=(ticks[2] + ticks[3]) / CLOCK_TICKS,
    )


def peak_rss(pid: int) -> int | None:
    """The process's peak resident memory so far (VmHWM) in bytes; None when it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def all_processes() -> dict[int, ProcessInfo]:
    """Every process visible in /proc."""
    found: dict[int, ProcessInfo] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = read_process(int(entry.name))
            if info is not None:
                found[info.pid] = info
    return found


def process_tree(roots: Iterable[int]) -> dict[int, ProcessInfo]:
    """The given processes and all their descendants that are alive now."""
    everything = all_processes()
    children: dict[int, list[int]] = {}
    for info in everything.values():
        children.setdefault(info.ppid, []).append(info.pid)
    tree: dict[int, ProcessInfo] = {}
    pending = [pid for pid in roots if pid in everything]
    while pending:
        pid = pending.pop()
        if pid in tree:
            continue
        tree[pid] = everything[pid]
        pending.extend(children.get(pid, []))
    return tree


@dataclass(frozen=True)
class TreeSample:
    """The whole tree at one moment.

    Attributes:
        at: `time.monotonic()` of the sample.
        processes: How many processes the tree had.
        rss: Their resident memory, added up, in bytes.
        cpu_seconds: CPU time of the live processes and of their reaped children.
    """

    at: float
    processes: int
    rss: int
    cpu_seconds: float


def sample_tree(roots: Iterable[int]) -> TreeSample:
    """Count the processes, memory and CPU time of the trees under `roots` now."""
    return _summarize(process_tree(roots))


def _summarize(tree: dict[int, ProcessInfo]) -> TreeSample:
    return TreeSample(
        at=time.monotonic(),
        processes=len(tree),
        rss=sum(info.rss for info in tree.values()),
        cpu_seconds=sum(info.cpu_seconds + info.children_cpu_seconds for info in tree.values()),
    )


@dataclass
class TreeSampler:
    """Samples the trees under some roots in a background thread.

    Use it as a context manager; `samples` grows while it runs, and `peaks` keeps
    the highest VmHWM seen for every process that appeared in the tree.

    Args:
        roots: A callable returning the root pids (it may change while sampling).
        interval: Seconds between samples.
    """

    roots: Callable[[], Iterable[int]]
    interval: float = 0.25
    samples: list[TreeSample] = field(default_factory=list)
    peaks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def between(self, start: float, end: float) -> list[TreeSample]:
        """The samples taken in `[start, end]` (monotonic seconds)."""
        with self._lock:
            return [sample for sample in self.samples if start <= sample.at <= end]

    def peak_of(self, pids: Iterable[int]) -> int | None:
        """The highest peak memory (VmHWM, bytes) seen for any of `pids`; None if none seen."""
        with self._lock:
            seen = [self.peaks[pid] for pid in pids if pid in self.peaks]
        return max(seen) if seen else None

    def pids_seen(self) -> set[int]:
        """Every pid that appeared in the tree while sampling."""
        with self._lock:
            return set(self.peaks)

    def latest(self) -> TreeSample | None:
        """The last sample, if any."""
        with self._lock:
            return self.samples[-1] if self.samples else None

    def _loop(self) -> None:
        while not self._stop.is_set():
            tree = process_tree(list(self.roots()))
            sample = _summarize(tree)
            peaks = {pid: peak for pid in tree if (peak := peak_rss(pid)) is not None}
            with self._lock:
                self.samples.append(sample)
                for pid, peak in peaks.items():
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0))
            self._stop.wait(self.interval)


def children(pid: int) -> list[int]:
    """The process's children now (from /proc/<pid>/task/*/children; cheap, no full scan)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    for task in tasks:
        try:
            found += [int(value) for value in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


# multiprocessing's helper processes, by what they were started to run.
_FORK_SERVER = b"multiprocessing.forkserver"
_RESOURCE_TRACKER = b"multiprocessing.resource_tracker"


def command_line(pid: int) -> bytes:
    """The process's command line (arguments joined by NUL); empty when it is gone."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return b""


def flow_run_processes(serving_pid: int) -> list[int]:
    """The flow-run processes of a serving process, alive now.

    Its children; or, when its runs fork from multiprocessing's fork server
    (`deployments.fork_server`), the fork server's children. The fork server and the
    resource tracker are helpers held for the process's whole life, not runs.
    """
    found: list[int] = []
    for pid in children(serving_pid):
        line = command_line(pid)
        if _FORK_SERVER in line:
            found += children(pid)
        elif _RESOURCE_TRACKER not in line:
            found.append(pid)
    return found


@dataclass
class ChildPeaks:
    """Watches the flow-run processes of a serving process and keeps each one's peak memory.

    Reads only children lists and each process's status (VmHWM), so it can look
    often without taking much CPU from what it measures. Use it as a context manager.

    Args:
        parent: The serving process whose flow-run processes are watched.
        interval: Seconds between looks.
    """

    parent: int
    interval: float = 0.05
    peaks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> ChildPeaks:
        self._thread = threading.Thread(target=self._loop, name="child-peaks", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def peak(self) -> int | None:
        """The highest peak of any child seen, in bytes; None if no child was seen."""
        return max(self.peaks.values()) if self.peaks else None

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid in flow_run_processes(self.parent):
                value = peak_rss(pid)
                if value is not None and value > self.peaks.get(pid, 0):
                    self.peaks[pid] = value
            self._stop.wait(self.interval)
