"""The export floor: a bare httpx paging loop, run as its own process.

    OC_BENCH_AUTHORIZATION='User …, Organization …, Element …' \\
        python -m tooling.benchmarks.bare_export URL OUT [--page-size 200]

Pages through `URL` (a hub resource) with the `elements-next-page-token` cursor,
parses each page and writes its records as JSON Lines to `OUT`, the same work as
`export-connector-resource` without Prefect and without the project's client.
Prints one JSON line: records, pages, seconds (first request to file closed) and
the process's peak RSS in bytes. The authorization header comes from the
environment so that no secret shows in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

AUTHORIZATION_ENV = "OC_BENCH_AUTHORIZATION"


async def export(url: str, out: str, page_size: int, authorization: str) -> dict[str, float]:
    """Page through `url` into `out`; return the counts and the elapsed seconds."""
    records = pages = 0
    started = time.perf_counter()
    headers = {"Authorization": authorization, "Accept": "application/json"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        with open(out, "wb") as handle:  # noqa: ASYNC230 - the floor: plain blocking writes
            cursor: str | None = None
            while True:
                params: dict[str, str | int] = {"pageSize": page_size}
                if cursor:
                    params["nextPage"] = cursor
                response = await http.get(url, params=params)
                response.raise_for_status()
                page = response.json()
                handle.write(
                    b"".join(
                        json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                        for item in page
                    )
                )
                records += len(page)
                pages += 1
                cursor = response.headers.get("elements-next-page-token")
                if not cursor or not page:
                    break
    return {"records": records, "pages": pages, "seconds": time.perf_counter() - started}


def _peak_rss() -> int:
    """This process's peak RSS (VmHWM), bytes.

    Not `ru_maxrss`: Linux carries it over `exec` from the forking parent, so a
    child of a big process would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loop and print its JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m tooling.benchmarks.bare_export", description=__doc__
    )
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--page-size", type=int, default=200)
    args = parser.parse_args(argv)
    result = asyncio.run(export(args.url, args.out, args.page_size, os.environ[AUTHORIZATION_ENV]))
    result["peak_rss"] = _peak_rss()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
