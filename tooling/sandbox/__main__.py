"""`python -m tooling.sandbox` / `oc-sandbox`: run the sandbox on a loopback port.

Prints one JSON line once it accepts connections:
`{"event": "ready", "url": "http://127.0.0.1:<port>", "api_base_url": ".../elements/api-v2"}`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from callback_receiver.serving import is_loopback, run
from tooling.sandbox.app import create_app
from tooling.sandbox.config import SandboxConfig


def load_config(parser: argparse.ArgumentParser, path: str | None) -> SandboxConfig:
    """Load the configuration file, or exit with a message that quotes none of its values."""
    if path is None:
        return SandboxConfig()
    try:
        return SandboxConfig.from_file(path)
    except OSError as exc:
        parser.error(f"cannot read --config {path}: {exc.strerror}")
    except ValidationError as exc:
        # Without the input values: the file holds secrets.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(file)'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        parser.error(f"invalid --config {path}: {problems}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (see `--help`)."""
    parser = argparse.ArgumentParser(
        prog="python -m tooling.sandbox",
        description="Local stand-in for the SAP Open Connectors API and the Keap OAuth provider.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--config", help="JSON file with a SandboxConfig")
    parser.add_argument(
        "--max-lifetime",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="stop after this many seconds (default 3600; 0 for no limit)",
    )
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sandbox until its lifetime ends, its parent dies, or SIGTERM/SIGINT."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.allow_remote and not is_loopback(args.host):
        parser.error(
            f"refusing to listen on non-loopback host {args.host!r}: the sandbox has "
            "well-known secrets; pass --allow-remote to insist"
        )
    config = load_config(parser, args.config)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run(
        create_app(config),
        host=args.host,
        port=args.port,
        max_lifetime=args.max_lifetime if args.max_lifetime > 0 else None,
        parent_pid=args.parent_pid,
        ready_extra={"api_base_url": "/elements/api-v2"},
    )


if __name__ == "__main__":
    main()
