"""`python -m callback_receiver`: run the OAuth callback receiver.

Example:
    python -m callback_receiver --port 8765 --prefect-api-url http://127.0.0.1:4200/api

Point the OAuth app's callback URL at `https://<public host>[<root path>]/oauth/callback`.
Prints one JSON line once it accepts connections:
`{"event": "ready", "url": "http://127.0.0.1:<port>", "callback_url": ".../oauth/callback"}`.
Every option defaults to its `OC_CALLBACK_*` environment variable.
"""

from __future__ import annotations

import argparse
import logging
import sys

from callback_receiver.app import CALLBACK_PATH, create_app
from callback_receiver.inflight import RELOAD_AFTER_SECONDS
from callback_receiver.serving import is_loopback, run
from callback_receiver.settings import ReceiverSettings

# How long an idle keep-alive connection stays open: beyond a reload after "still working".
KEEP_ALIVE_SECONDS = int(RELOAD_AFTER_SECONDS * 3)


def build_parser(defaults: ReceiverSettings) -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m callback_receiver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=defaults.host, help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port; 0 picks a free one")
    parser.add_argument("--prefect-api-url", default=defaults.prefect_api_url)
    parser.add_argument("--prefect-ui-url", default=defaults.prefect_ui_url)
    parser.add_argument(
        "--root-path", default=defaults.root_path, help="URL prefix behind a reverse proxy"
    )
    parser.add_argument("--forwarded-allow-ips", default=defaults.forwarded_allow_ips)
    parser.add_argument("--wait-seconds", type=float, default=defaults.wait_seconds)
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        default=defaults.allow_remote,
        help="allow a non-loopback --host (serve it behind HTTPS)",
    )
    parser.add_argument(
        "--max-lifetime", type=float, default=0, help="stop after this many seconds (0: never)"
    )
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = build_parser(ReceiverSettings())
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        parser.error("--host is not loopback: pass --allow-remote and serve it behind HTTPS")
    settings = ReceiverSettings(
        host=args.host,
        port=args.port,
        prefect_api_url=args.prefect_api_url,
        prefect_ui_url=args.prefect_ui_url,
        root_path=args.root_path.rstrip("/"),
        forwarded_allow_ips=args.forwarded_allow_ips,
        wait_seconds=args.wait_seconds,
        allow_remote=args.allow_remote,
    )
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Importing Prefect configured logging already (basicConfig then does nothing):
    # the receiver's own outcome lines are INFO.
    logging.getLogger("callback_receiver").setLevel(logging.INFO)
    run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        max_lifetime=args.max_lifetime or None,
        parent_pid=args.parent_pid,
        ready_extra={"callback_url": f"{settings.root_path}{CALLBACK_PATH}"},
        lifespan="on",
        uvicorn_options={
            "proxy_headers": True,
            "forwarded_allow_ips": settings.forwarded_allow_ips,
            # Longer than a "still working" page's Retry-After: a reload on the same
            # connection must not meet uvicorn closing it (5 s by default) at that moment.
            "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        },
    )


if __name__ == "__main__":
    main()
