"""Serve an ASGI app as a loopback service process: bind, serve, announce readiness, stop.

Used by the callback receiver; the sandbox (tooling) reuses it. No Prefect inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any, Literal

import uvicorn

logger = logging.getLogger("callback_receiver.serving")

_PARENT_CHECK_SECONDS = 1.0


class StopRequest:
    """A signal handler that only remembers that a stop was asked for.

    Installed around uvicorn, which handles SIGINT/SIGTERM itself while serving and
    then re-raises the signal with the handler it found: this one, so the process
    still exits cleanly (0). A signal that arrives before uvicorn took over is
    remembered here and acted on by the watcher.
    """

    def __init__(self) -> None:
        """Start with no stop requested."""
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        """Remember the request."""
        self.requested = True


def is_loopback(host: str) -> bool:
    """Whether `host` names a loopback interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket; port 0 picks a free port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(1024)
    return sock


def socket_url(sock: socket.socket) -> str:
    """The `http://host:port` base URL of a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def parent_alive(parent_pid: int, original_ppid: int) -> bool:
    """Whether the watched parent process still exists."""
    # Re-parented (to init or a subreaper): the parent died, even if its pid is reused.
    if parent_pid == original_ppid and os.getppid() != original_ppid:
        return False
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def announce_ready(url: str, extra: Mapping[str, str] | None = None) -> None:
    """Print the one JSON line that tells the parent where the service listens.

    `{"event": "ready", "url": "http://127.0.0.1:<port>", ...}`: `extra` adds paths
    relative to the URL, e.g. `{"api_base_url": "/elements/api-v2"}`.
    """
    ready = {"event": "ready", "url": url}
    ready.update({key: f"{url}{path}" for key, path in (extra or {}).items()})
    try:
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
    except OSError:
        logger.warning("could not write the ready line: nobody reads stdout")


async def _watch(
    server: uvicorn.Server,
    url: str,
    stop: StopRequest,
    max_lifetime: float | None,
    parent_pid: int | None,
    ready_extra: Mapping[str, str] | None,
) -> None:
    started = time.monotonic()
    original_ppid = os.getppid()
    while not server.started:
        if server.should_exit:
            return
        if stop.requested:
            server.should_exit = True
            return
        await asyncio.sleep(0.02)
    announce_ready(url, ready_extra)
    while not server.should_exit:
        if stop.requested:
            server.should_exit = True
        elif max_lifetime is not None and time.monotonic() - started >= max_lifetime:
            logger.info("lifetime over, stopping")
            server.should_exit = True
        elif parent_pid is not None and not parent_alive(parent_pid, original_ppid):
            logger.info("parent process %d is gone, stopping", parent_pid)
            server.should_exit = True
        else:
            pause = _PARENT_CHECK_SECONDS
            if max_lifetime is not None:
                pause = min(pause, max_lifetime - (time.monotonic() - started))
            await asyncio.sleep(max(pause, 0.01))


async def _guarded_watch(
    server: uvicorn.Server,
    url: str,
    stop: StopRequest,
    max_lifetime: float | None,
    parent_pid: int | None,
    ready_extra: Mapping[str, str] | None,
) -> None:
    try:
        await _watch(server, url, stop, max_lifetime, parent_pid, ready_extra)
    except Exception:
        # Without its watcher the service could outlive its parent: stop instead.
        logger.exception("the service watcher failed, stopping")
        server.should_exit = True


async def serve(
    app: Any,
    sock: socket.socket,
    *,
    max_lifetime: float | None,
    parent_pid: int | None,
    stop: StopRequest | None = None,
    ready_extra: Mapping[str, str] | None = None,
    lifespan: Literal["auto", "on", "off"] = "off",
    uvicorn_options: Mapping[str, Any] | None = None,
) -> None:
    """Serve `app` on `sock` until the lifetime ends, the parent dies, or a signal arrives.

    Args:
        app: The ASGI app.
        sock: A bound, listening socket.
        max_lifetime: Seconds before stopping by itself; None for no limit.
        parent_pid: A process to outlive by at most a second; None to watch nothing.
        stop: Set by signal handlers installed before uvicorn's; None for none.
        ready_extra: Further URLs for the ready line, as paths relative to the root.
        lifespan: Whether to run the app's lifespan (startup and shutdown) events.
        uvicorn_options: Further `uvicorn.Config` options (e.g. proxy headers).
    """
    config = uvicorn.Config(
        app,
        access_log=False,  # it prints query strings (secrets, codes); apps log paths only
        log_config=None,
        lifespan=lifespan,
        timeout_graceful_shutdown=5,
        **dict(uvicorn_options or {}),
    )
    server = uvicorn.Server(config)
    watcher = asyncio.create_task(
        _guarded_watch(
            server, socket_url(sock), stop or StopRequest(), max_lifetime, parent_pid, ready_extra
        )
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()


def run(
    app: Any,
    *,
    host: str,
    port: int,
    max_lifetime: float | None,
    parent_pid: int | None,
    ready_extra: Mapping[str, str] | None = None,
    lifespan: Literal["auto", "on", "off"] = "off",
    uvicorn_options: Mapping[str, Any] | None = None,
) -> None:
    """Bind and serve in the current process; return after a clean shutdown."""
    sock = bind_socket(host, port)
    stop = StopRequest()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
    try:
        asyncio.run(
            serve(
                app,
                sock,
                max_lifetime=max_lifetime,
                parent_pid=parent_pid,
                stop=stop,
                ready_extra=ready_extra,
                lifespan=lifespan,
                uvicorn_options=uvicorn_options,
            )
        )
    finally:
        sock.close()
