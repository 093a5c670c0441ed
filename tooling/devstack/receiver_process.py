"""The callback receiver as a separate process on a free loopback port."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tooling.devstack.processes import ManagedProcess, read_ready_line, start_process

RECEIVER_START_TIMEOUT = 60.0


@dataclass
class ReceiverProcess:
    """A running callback receiver.

    Attributes:
        url: Its root, e.g. `http://127.0.0.1:8765`.
        callback_url: The address to register as the OAuth app's callback URL.
        process: The process.
    """

    url: str
    callback_url: str
    process: ManagedProcess

    def stop(self) -> None:
        """Stop the receiver."""
        self.process.stop()


def start_receiver(
    env: dict[str, str],
    work_dir: Path,
    *,
    prefect_api_url: str,
    prefect_ui_url: str,
    lifetime: float = 3600,
    name: str = "callback-receiver",
) -> ReceiverProcess:
    """Start `python -m callback_receiver` and wait for its ready line.

    Raises:
        StackError: The receiver did not report ready in time.
    """
    process = start_process(
        name,
        [
            sys.executable,
            "-m",
            "callback_receiver",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--prefect-api-url",
            prefect_api_url,
            "--prefect-ui-url",
            prefect_ui_url,
            "--max-lifetime",
            str(int(lifetime)),
            "--parent-pid",
            str(os.getpid()),
        ],
        env=env,
        log_path=work_dir / "logs" / f"{name}.log",
        pipe_stdout=True,
    )
    try:
        ready = read_ready_line(process, timeout=RECEIVER_START_TIMEOUT)
    except BaseException:
        process.stop()
        raise
    return ReceiverProcess(url=ready["url"], callback_url=ready["callback_url"], process=process)
