"""A throwaway PostgreSQL cluster for the Prefect server of the local stack.

Debian's `postgresql` package provides the binaries (`scripts/_postgresql.sh` installs
it when missing). The cluster lives in a private temporary directory, listens on
127.0.0.1 only (its unix socket in that directory too), belongs to an unprivileged
user (PostgreSQL refuses to run as root) and is stopped and deleted with the stack.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tooling.devstack.processes import (
    ManagedProcess,
    StackError,
    free_port,
    start_process,
    wait_until,
)

POSTGRESQL_ROOT = Path("/usr/lib/postgresql")
CLUSTER_USER = "postgres"
# Made when no `postgres` user exists (the tests run as root, PostgreSQL refuses root).
FALLBACK_USER = "oc-postgresql"
DATABASE = "prefect"
ROLE = "prefect"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30
DUMP_TIMEOUT = 120


def postgresql_bin() -> Path:
    """The directory of the PostgreSQL server binaries (`OC_POSTGRESQL_BIN`, else the newest).

    Raises:
        StackError: No PostgreSQL server is installed.
    """
    configured = os.environ.get("OC_POSTGRESQL_BIN")
    if configured:
        return Path(configured)
    versions = sorted(
        (path for path in POSTGRESQL_ROOT.glob("*/bin") if (path / "postgres").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not versions:
        raise StackError(
            "PostgreSQL is not installed: `apt-get install postgresql` (scripts/test does it), "
            "or set OC_POSTGRESQL_BIN to the directory holding `postgres` and `initdb`."
        )
    return versions[-1]


def cluster_user() -> str | None:
    """The user owning the cluster: None when not root (the caller's own), else an unprivileged one.

    Raises:
        StackError: Running as root and no unprivileged user could be found or made.
    """
    if os.geteuid() != 0:
        return None
    for name in (CLUSTER_USER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [
            "/usr/sbin/useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_USER,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"Could not create the user {FALLBACK_USER}: {result.stderr.strip()}")
    return FALLBACK_USER


def as_user(user: str | None, argv: list[str]) -> list[str]:
    """`argv` run as `user` (`setpriv` execs, so the pid stays the command's own)."""
    if user is None:
        return argv
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


@dataclass
class PostgreSQLCluster:
    """A running throwaway cluster with one database for Prefect.

    Attributes:
        port: Its TCP port on 127.0.0.1.
        root: Its private directory (data directory and unix socket), deleted on stop.
        user: The system user running it (None: the caller's own).
        process: `timeout` running the postmaster (its process group holds the whole cluster).
        bin_dir: The PostgreSQL binaries used.
    """

    port: int
    root: Path
    user: str | None
    process: ManagedProcess
    bin_dir: Path
    password: str = field(repr=False)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def connection_url(self) -> str:
        """The SQLAlchemy address for `PREFECT_API_DATABASE_CONNECTION_URL` (holds the password)."""
        return f"postgresql+asyncpg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def dump(self, path: Path) -> Path:
        """Write the Prefect database's rows to `path` as plain SQL (`pg_dump --data-only`).

        For audits that read the database after the cluster is gone (it is deleted on
        stop). Runs as the caller, over TCP with the cluster's password, bounded in time;
        its messages go to `pg_dump.log` beside `path`.

        Raises:
            StackError: The cluster is not running, or `pg_dump` failed or timed out.
        """
        if not self.process.is_running():
            raise StackError(f"No dump to {path}: the PostgreSQL cluster is not running.")
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.parent / "pg_dump.log"
        argv = _client_argv(self, "pg_dump", "--data-only", f"--file={path}", DATABASE)
        with log.open("ab") as output:
            try:
                result = subprocess.run(  # noqa: S603 - argv built here
                    argv,
                    env=_client_env(self),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    timeout=DUMP_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise StackError(
                    f"pg_dump did not finish in {DUMP_TIMEOUT} s; see {log}."
                ) from error
        if result.returncode != 0:
            raise StackError(f"pg_dump failed (code {result.returncode}):\n{_tail(log)}")
        return path

    def stop(self) -> None:
        """Stop the cluster (fast shutdown, bounded in time) and delete its directory."""
        if self.process.is_running():
            # SIGINT is PostgreSQL's "fast" shutdown (pg_ctl stop -m fast); `timeout` passes it on.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.popen.wait(timeout=STOP_TIMEOUT)
        self.process.stop()  # whatever is left of its group: SIGTERM, then SIGKILL
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgresql(
    log_dir: Path, *, port: int | None = None, lifetime: float = 3600
) -> PostgreSQLCluster:
    """Make a cluster with a `prefect` role and database, start it on 127.0.0.1, wait until ready.

    Args:
        log_dir: Where `postgresql.log` and `initdb.log` go.
        port: Its port; a free one by default.
        lifetime: Seconds after which the cluster shuts down by itself (fast shutdown).

    Raises:
        StackError: PostgreSQL is missing, or the cluster did not start in time.
    """
    bin_dir = postgresql_bin()
    user = cluster_user()
    port = port or free_port()
    password = secrets.token_urlsafe(24)
    # Not in the stack's home: pytest's temporary directories are private to root, and the
    # cluster's user must be able to reach its own directory.
    root = Path(tempfile.mkdtemp(prefix="oc-postgresql-"))
    try:
        (root / "run").mkdir()
        password_file = root / "password"
        password_file.write_text(password)
        password_file.chmod(0o600)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (root, root / "run", password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        log_dir.mkdir(parents=True, exist_ok=True)
        _initdb(bin_dir, user, root, password_file, log_dir / "initdb.log")
        password_file.unlink()
        # `timeout` forwards the stop signal to the postmaster and bounds its life.
        bounded = ["timeout", "--signal=INT", f"--kill-after={STOP_TIMEOUT}", f"{lifetime:.0f}"]
        process = start_process(
            "postgresql",
            bounded
            + as_user(
                user,
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(root / "data"),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={root / 'run'}",
                    "-c",
                    "max_connections=200",
                    # Throwaway data: no need to wait for the disk on every commit.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
            ),
            env=_server_env(),
            log_path=log_dir / "postgresql.log",
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    cluster = PostgreSQLCluster(
        port=port, root=root, user=user, process=process, bin_dir=bin_dir, password=password
    )
    try:
        wait_until(
            lambda: _ready(cluster),
            timeout=START_TIMEOUT,
            what=f"PostgreSQL on 127.0.0.1:{port}",
            process=process,
        )
        _create_database(cluster, log_dir / "createdb.log")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _server_env() -> dict[str, str]:
    # Nothing of the caller's environment (PG* variables, Prefect settings) reaches the server.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}


def _client_argv(cluster: PostgreSQLCluster, tool: str, *args: str) -> list[str]:
    """A PostgreSQL client tool's command line, connecting as the Prefect role over loopback."""
    return [
        str(cluster.bin_dir / tool),
        "-h",
        "127.0.0.1",
        "-p",
        str(cluster.port),
        "-U",
        ROLE,
        *args,
    ]


def _client_env(cluster: PostgreSQLCluster) -> dict[str, str]:
    return {**_server_env(), "PGPASSWORD": cluster.password, "PGCONNECT_TIMEOUT": "5"}


def _initdb(bin_dir: Path, user: str | None, root: Path, password_file: Path, log: Path) -> None:
    with log.open("ab") as output:
        result = subprocess.run(  # noqa: S603 - argv built here
            as_user(
                user,
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(root / "data"),
                    f"--username={ROLE}",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
            ),
            env=_server_env(),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"initdb failed (code {result.returncode}):\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    """The last lines of a tool's log, under a line naming the log."""
    last = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join([f"The end of its log ({log}):", *last])


def _ready(cluster: PostgreSQLCluster) -> bool:
    result = subprocess.run(  # noqa: S603 - argv built here
        [str(cluster.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(cluster.port), "-q"],
        env=_client_env(cluster),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def _create_database(cluster: PostgreSQLCluster, log: Path) -> None:
    with log.open("ab") as output:
        result = subprocess.run(  # noqa: S603 - argv built here
            _client_argv(cluster, "createdb", DATABASE),
            env=_client_env(cluster),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            timeout=60,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"createdb failed (code {result.returncode}); see {log}.")
