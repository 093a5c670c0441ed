"""The demo: authorize an Infusionsoft ERP instance end to end on this machine.

    python -m tooling.demo             # you open the consent link and answer in the Prefect UI
    python -m tooling.demo --approve   # headless: approves over HTTP (CI, or to try it quickly)
    python -m tooling.demo --deny      # headless: refuses, and the run fails with the refusal

It starts a local Prefect server (SQLite, loopback), the Open Connectors sandbox
and the callback receiver, saves the demo blocks (the OAuth app's callback URL is
the receiver), serves the deployment, starts a run, prints the consent link and
the run's page, and reports the saved instance. Clicking Allow on the consent page
is all a person does: the redirect reaches the receiver, which resumes the run.
Every process the demo started is stopped at the end, also when the demo is
interrupted: Ctrl+C, SIGTERM (a CI timeout, `kill`) and SIGHUP (a closed terminal)
all stop it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
from prefect.client.orchestration import get_client
from prefect.deployments import arun_deployment

from blocks import ConnectorInstance
from flows.steps.names import AUTHENTICATE_DEPLOYMENT, AUTHENTICATE_FLOW, full_name
from flows.steps.parameters import block_name_for
from tooling.devstack.consent import decide, deliver
from tooling.devstack.processes import StackError
from tooling.devstack.runs import consent_link, wait_for_final, wait_for_form
from tooling.devstack.stack import ENCRYPTED_KEY_BLOCK, LocalStack, local_stack

DEPLOYMENT = full_name(AUTHENTICATE_FLOW, AUTHENTICATE_DEPLOYMENT)
# Signals that stop the demo as Ctrl+C does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def say(message: str = "") -> None:
    """Print a line of the demo's story."""
    # After SIGHUP the terminal may be gone: the story is lost, the cleanup must not be.
    with contextlib.suppress(OSError):
        print(message, flush=True)


def stop_like_ctrl_c(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> list[int]:
    """Make each of `signals` interrupt the demo exactly as Ctrl+C (SIGINT) does.

    The handler calls whatever handles SIGINT at that moment: Python's default raises
    KeyboardInterrupt; inside `asyncio.run` it cancels the running coroutine first. Either
    way the stack's context manager stops every process on the way out. Only the first
    signal counts: a second one must not interrupt that cleanup.

    Returns:
        The numbers of the signals received, filled in as they arrive.
    """
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            return
        received.append(signum)
        ctrl_c = signal.getsignal(signal.SIGINT)
        if not callable(ctrl_c):
            raise KeyboardInterrupt
        ctrl_c(signal.SIGINT, frame)

    for sig in signals:
        signal.signal(sig, handler)
    return received


async def run_demo(
    stack: LocalStack, *, decision: str | None, instance_name: str, wait: float
) -> int:
    """Start one authorization run and follow it to its end; return the exit code."""
    await stack.save_sandbox_blocks()
    say("Saved the blocks: open-connectors, infusionsoft-oauth-app, " + ENCRYPTED_KEY_BLOCK)
    run = await arun_deployment(
        DEPLOYMENT,
        parameters={
            "instance_name": instance_name,
            "configuration": {"infusionsoft.server": "https://xx123.infusionsoft.com"},
            "secret_configuration": {"infusionsoft.private.key": ENCRYPTED_KEY_BLOCK},
            "tags": ["demo"],
        },
        timeout=0,
        as_subflow=False,
    )
    page = stack.prefect.flow_run_url(run.id)
    say(f"Started the run {run.name!r}: {page}")
    async with get_client() as client:
        started = time.monotonic()
        _, description = await wait_for_form(client, run.id, timeout=120)
        link = consent_link(description)
        say(
            f"The run waits for the authorization ({time.monotonic() - started:.1f} s after start)."
        )
        say()
        say("Consent link (send it to the account owner):")
        say(f"  {link}")
        if decision is None:
            say()
            say("Open it in a browser and click Allow (or Deny): the run continues by itself.")
            say(f"Watch it at {page}")
            say(f"Waiting up to {wait / 60:.0f} minutes (Ctrl+C to stop)...")
        else:
            async with httpx.AsyncClient(timeout=60) as browser:
                redirect = await decide(link, decision, client=browser)  # type: ignore[arg-type]
                landing = await deliver(redirect, client=browser)
            say()
            say(f"Pressed {'Allow' if decision == 'approve' else 'Deny'} at the consent page; the")
            say(f"provider redirected to the callback receiver, which answered: {_title(landing)}")
        final = await wait_for_final(client, run.id, timeout=wait)
    state = final.state
    assert state is not None
    say()
    if state.is_completed():
        block_name = block_name_for(instance_name)
        instance = await ConnectorInstance.aload(block_name)
        async with instance.get_client() as client:
            await client.ping(instance.hub)
        say(f"Completed: instance {instance.instance_id} ({instance.instance_name!r}) is saved in")
        say(f"the block {block_name!r} and answers its ping. Load it in any flow with")
        say(f"  ConnectorInstance.load({block_name!r})")
        return 0
    say(f"The run ended {state.name}: {state.message}")
    return 0 if decision == "deny" and state.is_failed() else 1


def _title(page: httpx.Response) -> str:
    match = re.search(r"<h1[^>]*>(.*?)</h1>", page.text, re.S)
    return f"{page.status_code} {html.unescape(match.group(1)) if match else ''}".strip()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit code is 0 when the run ended as asked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--approve", action="store_true", help="approve over HTTP (headless)")
    choice.add_argument("--deny", action="store_true", help="deny over HTTP (headless)")
    parser.add_argument("--instance-name", default="Demo ERP", help="name of the new instance")
    parser.add_argument(
        "--home", type=Path, default=None, help="working directory (default: .demo/<timestamp>)"
    )
    parser.add_argument("--wait-minutes", type=float, default=30, help="how long to wait")
    args = parser.parse_args(argv)
    home = (args.home or Path(".demo") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    decision = "approve" if args.approve else "deny" if args.deny else None
    stopped_by = stop_like_ctrl_c()
    say(f"Starting a local Prefect server (SQLite), the sandbox and the deployment in {home} ...")
    try:
        with local_stack(home, lifetime=args.wait_minutes * 60 + 600) as stack:
            say(f"Prefect UI:  {stack.prefect.url}")
            say(f"Sandbox:     {stack.sandbox.url}")
            say(f"Callback:    {stack.callback_url}")
            return asyncio.run(
                run_demo(
                    stack,
                    decision=decision,
                    instance_name=args.instance_name,
                    wait=args.wait_minutes * 60,
                )
            )
    except StackError as exc:
        say(f"The demo could not finish: {exc}")
        return 1
    except KeyboardInterrupt:
        say("Stopped.")
        # The shell's convention: 128 + the signal (130 for Ctrl+C, 143 for SIGTERM).
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    finally:
        say(f"Stopped every process the demo started. Logs: {home / 'logs'}")


if __name__ == "__main__":
    sys.exit(main())
