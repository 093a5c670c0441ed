"""The minimal-Prefect floor: one HTTP call, a suspension for a link, a block after the answer.

It does what Prefect itself makes any such flow pay for, and nothing of the
project's own: the run starts in a subprocess of a served runner, makes one HTTP
call (the sandbox's `oauth/url`), suspends with a resume form whose description
holds the link, and after the callback receiver resumes it (the flow runs again
from the top, as ours does) saves one block. It imports only Prefect and httpx.

The OAuth app's secret, needed for the state the callback receiver verifies,
comes from the serving process's environment (`OC_BENCH_STATE_KEY`): reading a
block would be project work the floor must not include. Only the benchmark sets
it, for a sandbox app with random secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from uuid import UUID

import httpx
from prefect import flow
from prefect.blocks.system import Secret
from prefect.context import FlowRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput

FLOW_NAME = "minimal-consent"
DEPLOYMENT_NAME = "minimal-consent"
STATE_KEY_ENV = "OC_BENCH_STATE_KEY"
# The same signature as `open_connectors.authorization.StateSigner.sign` (a unit test
# checks they agree), written out so the floor does not import the project.
_STATE_LABEL = b"open-connectors-authorization-state:v2:"


class MinimalAnswer(RunInput):
    """The redirect's parameters, as the callback receiver sends them."""

    code: str = ""
    state: str = ""
    error: str = ""
    error_description: str = ""


def minimal_state(run_id: UUID, key: str) -> str:
    """The state the callback receiver expects for this run, signed with the state key."""
    key_id = hashlib.sha256(key.encode()).hexdigest()[:8]
    message = _STATE_LABEL + f"{run_id.hex}.{key_id}".encode()
    mac = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return f"{run_id.hex}.{key_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


@flow(name=FLOW_NAME)
async def minimal_consent(
    oauth_url_endpoint: str, api_key: str, callback_url: str, marker_block: str
) -> str:
    """Ask for a consent link, suspend until answered, then save a block.

    Args:
        oauth_url_endpoint: The sandbox's `POST .../elements/{key}/oauth/url`.
        api_key: The OAuth app's client id (public).
        callback_url: The callback receiver's address.
        marker_block: The name of the `Secret` block saved after the answer.

    Returns:
        The marker block's name.
    """
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    secret = os.environ[STATE_KEY_ENV]
    body = {
        "apiKey": api_key,
        "apiSecret": secret,
        "callbackUrl": callback_url,
        "state": minimal_state(context.flow_run.id, secret),
    }
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(oauth_url_endpoint, json=body)
        response.raise_for_status()
    link = response.json()["oauthUrl"]
    form = MinimalAnswer.with_initial_data(description=f"[Authorize](<{link}>)")
    answer = await asuspend_flow_run(wait_for_input=form, key="consent", timeout=3600)
    await Secret(value=answer.code).asave(marker_block, overwrite=True)
    return marker_block
