"""Search everything the end-to-end runs left behind for every secret they used.

Each stack is recorded before it stops: its home (Prefect database, results storage,
process logs; on PostgreSQL, a dump of the database that the stack writes when it
stops, since the cluster is deleted with it) and the secrets it saw (platform secrets,
OAuth client secret, the Secret block's value, every instance token and every
authorization code the sandbox issued). The audit runs last in the session and names
each place where a secret was found.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tooling.devstack.stack import LocalStack

_BASE64_BLOB = re.compile(rb"[A-Za-z0-9+/=_-]{24,}")
# Where a recorded PostgreSQL stack dumps its database when it stops, in the stack's home.
# Searched as text: COPY escapes only backslashes and control characters, never in a secret.
POSTGRESQL_DUMP = Path("postgresql-dump") / "prefect.sql"


@dataclass
class AuditedStack:
    """A stack's home and the secret values it used."""

    home: Path
    secrets: set[str] = field(default_factory=set)


@dataclass
class LeakAudit:
    """The stacks of the session, for the final search."""

    stacks: list[AuditedStack] = field(default_factory=list)

    async def record(self, stack: LocalStack) -> None:
        """Remember a stack's home and every secret it used (call it before the stack stops).

        A stack on PostgreSQL is told to dump its database into its home when it stops.
        """
        config = stack.sandbox.config
        secrets = {config.user_secret, config.organization_secret}
        secrets.update(app.client_secret for app in config.oauth_apps)
        if stack.encrypted_key_value:
            secrets.add(stack.encrypted_key_value)
        async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=30) as admin:
            secrets.update(
                item["token"] for item in (await admin.get("/_sandbox/instances")).json()
            )
            secrets.update(item["code"] for item in (await admin.get("/_sandbox/codes")).json())
        if stack.postgresql is not None:
            stack.dump_database_to = stack.home / POSTGRESQL_DUMP
        self.stacks.append(AuditedStack(stack.home, {value for value in secrets if value}))

    def findings(self) -> list[str]:
        """Every place a secret was found, as `where: which secret (its first characters)`."""
        found: list[str] = []
        for audited in self.stacks:
            needles = sorted(audited.secrets)
            found += database_findings(audited.home / "prefect.db", needles)
            for directory in ("storage", "logs", POSTGRESQL_DUMP.parent):
                found += file_findings(audited.home / directory, needles)
        return found


def database_findings(database: Path, needles: list[str]) -> list[str]:
    """Every table and column of the Prefect database that holds a needle."""
    found: list[str] = []
    if not database.exists():
        return found
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f"PRAGMA table_info('{table}')")]:
                query = f"SELECT CAST(\"{column}\" AS TEXT) FROM '{table}'"  # noqa: S608
                for (value,) in db.execute(query):
                    if value is None:
                        continue
                    for needle in needles:
                        if needle in value:
                            found.append(f"{database.name}: {table}.{column}: {needle[:4]}…")
    return sorted(set(found))


def dumped_rows(dump: Path, table: str) -> int:
    """How many rows of `table` a `pg_dump` plain-SQL file holds (0 when it is missing)."""
    if not dump.exists():
        return 0
    rows, inside = 0, False
    with dump.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith(f"COPY public.{table} "):
                inside = True
            elif inside and line.rstrip("\n") == "\\.":
                return rows
            elif inside:
                rows += 1
    return rows


def file_findings(root: Path, needles: list[str]) -> list[str]:
    """Files under `root` holding a needle in clear or inside a base64 blob (pickled results)."""
    found: list[str] = []
    if not root.exists():
        return found
    for path in sorted(item for item in root.rglob("*") if item.is_file()):
        data = path.read_bytes()
        texts = [data, *(_decoded(blob) for blob in _BASE64_BLOB.findall(data))]
        for needle in needles:
            if any(needle.encode() in text for text in texts):
                found.append(f"{path}: {needle[:4]}…")
    return found


def _decoded(blob: bytes) -> bytes:
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(blob + b"=" * (-len(blob) % 4))
        except (binascii.Error, ValueError):
            continue
    return b""
