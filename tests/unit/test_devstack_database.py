"""The local stack's database switch and how the PostgreSQL cluster is started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tooling.devstack import postgresql
from tooling.devstack.processes import StackError
from tooling.devstack.stack import DATABASE_VARIABLE, stack_database
from tooling.devstack.workers import cli_environment


def test_sqlite_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_VARIABLE, raising=False)
    assert stack_database() == "sqlite"


def test_the_environment_variable_selects_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_VARIABLE, " PostgreSQL ")
    assert stack_database() == "postgresql"
    # An explicit choice wins over the environment.
    assert stack_database("sqlite") == "sqlite"


def test_an_unknown_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_VARIABLE, "mysql")
    with pytest.raises(StackError, match="sqlite or postgresql"):
        stack_database()


def test_the_server_runs_as_the_unprivileged_user_with_the_same_pid() -> None:
    argv = postgresql.as_user("postgres", ["/usr/lib/postgresql/15/bin/postgres", "-D", "d"])
    # setpriv execs the server: the pid the stack signals is the postmaster's own.
    assert argv[0] == "setpriv" and "--reuid=postgres" in argv and "--regid=postgres" in argv
    assert argv[argv.index("--") + 1 :] == ["/usr/lib/postgresql/15/bin/postgres", "-D", "d"]
    assert postgresql.as_user(None, ["postgres"]) == ["postgres"]


def test_the_newest_installed_version_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OC_POSTGRESQL_BIN", raising=False)
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "postgres").touch()
    (tmp_path / "16" / "bin").mkdir(parents=True)  # no server binary: not a candidate
    monkeypatch.setattr(postgresql, "POSTGRESQL_ROOT", tmp_path)
    assert postgresql.postgresql_bin() == tmp_path / "15" / "bin"


def test_no_postgresql_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OC_POSTGRESQL_BIN", raising=False)
    monkeypatch.setattr(postgresql, "POSTGRESQL_ROOT", tmp_path)
    with pytest.raises(StackError, match="apt-get install postgresql"):
        postgresql.postgresql_bin()


def test_the_connection_url_is_not_in_the_repr() -> None:
    cluster = postgresql.PostgreSQLCluster(
        port=5,
        root=Path("/nowhere"),
        user=None,
        process=None,
        bin_dir=Path("/"),
        password="pw-x1",  # type: ignore[arg-type]
    )
    assert "pw-x1" in cluster.connection_url and "pw-x1" not in repr(cluster)


def test_cli_commands_find_the_projects_python_first() -> None:
    env = cli_environment({"PATH": "/usr/bin"})
    first = env["PATH"].split(os.pathsep)[0]
    assert Path(first, "python").exists() and env["PATH"].endswith("/usr/bin")
