"""Authenticate an Open Connectors connector instance through OAuth 2.0, as a Prefect flow.

    get_redirect_url ──▶ await_authorization ──▶ create_instance
    (consent link)       (the run waits for       (POST /instances, token saved
                          the person's answer)      in a block, ping, event)

Started from a deployment, the run *suspends* while it waits: no process is held,
and after the answer arrives the flow runs again from the top. Everything before
the wait therefore gives the same result the second time: the state is derived
from the run id, and the consent link is cached per run. Started directly (a
script, a test), the run *pauses* in its process and polls every 2 seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_link_artifact
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import adelete_flow_run_input
from pydantic import BaseModel, SecretStr

from flows.authorization_input import AuthorizationResponse, ConsentRequest, consent_description
from flows.events import INSTANCE_CREATED, emit_authorization_failed, emit_instance_event
from flows.handover import InstanceCheckFailedError, save_and_check
from flows.request import (
    DEFAULT_CREDENTIALS_BLOCK,
    DEFAULT_OAUTH_APP_BLOCK,
    AuthorizationBlocks,
    AuthorizationRequest,
    ConsentSubject,
    block_name_for,
    build_instance_request,
    load_authorization_blocks,
)
from open_connectors import (
    AuthorizationGrant,
    AuthorizationTimeoutError,
    InvalidAuthorizationAnswerError,
    OpenConnectorsError,
    PlatformUnavailableError,
    derive_state,
    profile_for,
    read_authorization_answer,
)
from open_connectors.redaction import redact_url

PAUSE_KEY_PREFIX = "authorization"
MAX_PROMPTS = 3
DIRECT_RUN_POLL_SECONDS = 2
DEFAULT_TIMEOUT_MINUTES = 24 * 60
RUN_TAG_PREFIX = "prefect-flow-run-"


class AuthenticatedInstance(BaseModel):
    """What an authorization returns: where to find the instance. Never the token.

    Attributes:
        instance_id: The Open Connectors instance id.
        instance_name: The instance name.
        element_key: The connector key.
        block_name: The name of the `ConnectorInstance` block holding the token.
        created: False when an earlier attempt of the same run had already created it.
    """

    instance_id: int
    instance_name: str
    element_key: str
    block_name: str
    created: bool = True


class AuthorizationPending(Exception):
    """The run is suspending; Prefect turns this exit into the suspension."""


def run_tag(flow_run_id: str) -> str:
    """The tag that marks the instance created by one flow run (for exactly-once creation)."""
    return f"{RUN_TAG_PREFIX}{flow_run_id}"


def _consent_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    # One consent link per flow run: the re-run after a resume reads it back
    # instead of asking the platform again.
    return f"open-connectors-consent-{context.task_run.flow_run_id}"


@task(
    name="get_redirect_url",
    cache_key_fn=_consent_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def get_redirect_url(request: ConsentSubject, blocks: AuthorizationBlocks) -> ConsentRequest:
    """Ask Open Connectors for the provider's consent link, with this run's state.

    The link is logged, published as a link artifact and returned; it holds the
    OAuth app's public client id and the state, never a secret. Used by new
    authorizations (`AuthorizationRequest`) and re-authorizations alike.
    """
    logger = get_run_logger()
    flow_run_id = _flow_run_id()
    app = blocks.oauth_app
    state = derive_state(flow_run_id, app.api_secret)
    async with blocks.credentials.get_client() as client:
        answer = await client.get_oauth_url(
            request.element_key,
            api_key=app.api_key,
            api_secret=app.api_secret,
            callback_url=app.callback_url,
            state=state,
            scope=app.scope,
        )
    url = answer.oauth_url
    _check_consent_url(url, state, app.api_secret)
    connector = profile_for(request.element_key).name
    consent = ConsentRequest(
        url=url, state=state, instance_name=request.instance_name, connector_name=connector
    )
    logger.info(
        "Consent link for the %s instance %r (send it to the account owner): %s",
        connector,
        request.instance_name,
        redact_url(url),
    )
    await acreate_link_artifact(
        link=url,
        link_text=f"Authorize {connector} for “{request.instance_name}”",
        key=f"consent-link-{request.instance_block}",
        description=(
            f"Open this link to authorize the {connector} instance “{request.instance_name}”. "
            "It stays valid while the run waits."
        ),
    )
    return consent


@task(name="await_authorization", persist_result=False)
async def await_authorization(
    consent: ConsentRequest, timeout_seconds: int
) -> AuthorizationGrant | None:
    """Wait for the person's answer and check it.

    Suspends the run when it was started from a deployment (returns None on that
    first pass; Prefect stops the run at its next step and runs the flow again after
    the resume), and pauses in process otherwise. An empty or malformed answer gets
    the form shown again, at most three times. The stored answer is deleted once
    read: Prefect keeps run input in plain text.

    Raises:
        AuthorizationDeniedError: The person refused.
        StateMismatchError: The answer belongs to another authorization.
        AuthorizationTimeoutError: Nobody answered in time (direct runs).
        InvalidAuthorizationAnswerError: No usable answer after three prompts.
    """
    logger = get_run_logger()
    run = current_flow_run()
    suspend = run.deployment_id is not None and run.parent_task_run_id is None
    problem: str | None = None
    for prompt in range(1, MAX_PROMPTS + 1):
        key = f"{PAUSE_KEY_PREFIX}-{prompt}"
        expires_at = datetime.now(UTC) + timedelta(seconds=timeout_seconds)
        form = AuthorizationResponse.with_initial_data(
            description=consent_description(
                consent, expires_at=expires_at, previous_problem=problem
            )
        )
        if suspend:
            answer = await asuspend_flow_run(
                wait_for_input=form, flow_run_id=run.id, key=key, timeout=timeout_seconds
            )
            if answer is None:
                logger.info(
                    "Waiting for the authorization until %s UTC. The run is suspended: no "
                    "process is held while it waits.",
                    f"{expires_at:%Y-%m-%d %H:%M}",
                )
                return None
        else:
            logger.info(
                "Waiting for the authorization until %s UTC (paused in this process).",
                f"{expires_at:%Y-%m-%d %H:%M}",
            )
            try:
                answer = await apause_flow_run(
                    wait_for_input=form,
                    timeout=timeout_seconds,
                    poll_interval=DIRECT_RUN_POLL_SECONDS,
                    key=key,
                )
            except FlowPauseTimeout:
                raise AuthorizationTimeoutError(
                    f"Nobody answered the consent request within {_duration(timeout_seconds)}; "
                    "the link has expired and no instance was created. Start a new run."
                ) from None
        await _forget_answer(answer, run)
        if answer.is_empty():
            problem = "no answer was given (an empty form, or an answer already used)."
            logger.warning("The answer was empty; showing the form again.")
            continue
        try:
            grant = read_authorization_answer(
                expected_state=consent.state,
                code=answer.code,
                state=answer.state,
                error=answer.error,
                error_description=answer.error_description,
            )
        except InvalidAuthorizationAnswerError as exc:
            problem = str(exc)
            logger.warning("The answer could not be used (%s); showing the form again.", exc)
            continue
        logger.info(
            "Authorization received%s.",
            "" if grant.state_checked else " (a bare code, accepted without a state to check)",
        )
        return grant
    raise InvalidAuthorizationAnswerError(
        f"No usable answer after {MAX_PROMPTS} prompts (last problem: {problem}) Start a new run."
    )


def _transient_failure(task: Any, task_run: Any, state: State) -> bool:
    """Retry `create_instance` only when the platform was briefly unavailable."""
    return isinstance(state.data, PlatformUnavailableError)


@task(
    name="create_instance",
    persist_result=False,
    retries=2,
    retry_delay_seconds=[5, 15],
    retry_condition_fn=_transient_failure,
)
async def create_instance(
    request: AuthorizationRequest, blocks: AuthorizationBlocks, grant: AuthorizationGrant
) -> AuthenticatedInstance:
    """Create the instance with the code, save its token in a block, and check it answers.

    Exactly once per run: the instance is tagged with the run id and looked up
    before any creation, so a retry or replay adopts it instead of creating another.
    The token is saved before the check, so a created instance is never lost.

    Raises:
        AuthorizationCodeRejectedError: The code expired or was used already.
        InstanceCheckFailedError: The instance was saved but does not answer.
    """
    logger = get_run_logger()
    flow_run_id = str(_flow_run_id())
    instance_request = build_instance_request(
        element_key=request.element_key,
        name=request.instance_name,
        configuration=request.configuration,
        tags=request.tags,
        blocks=blocks,
        code=grant.code,
    )
    async with blocks.credentials.get_client() as client:
        ensured = await client.ensure_instance(
            instance_request, idempotency_tag=run_tag(flow_run_id)
        )
    instance = ensured.instance
    if instance.token is None:
        raise InstanceCheckFailedError(
            f"Open Connectors created instance {instance.id} but returned no token; re-authorize "
            "it with the reauthorize-connector-instance deployment."
        )
    logger.info(
        "%s instance %s (%r).",
        "Created" if ensured.created else "Found the instance this run created earlier:",
        instance.id,
        instance.name,
    )
    await save_and_check(
        instance,
        token=instance.token,
        element_key=request.element_key,
        credentials=blocks.credentials,
        block_name=request.instance_block,
        flow_run_id=flow_run_id,
        what_happened="created",
        advice=(
            f"Re-authorize instance {instance.id} (reauthorize-connector-instance) rather than "
            "creating another."
        ),
    )
    summary = AuthenticatedInstance(
        instance_id=instance.id,
        instance_name=instance.name,
        element_key=request.element_key,
        block_name=request.instance_block,
        created=ensured.created,
    )
    emit_instance_event(
        INSTANCE_CREATED,
        instance_id=summary.instance_id,
        instance_name=summary.instance_name,
        element_key=summary.element_key,
        block_name=summary.block_name,
        payload={"created": summary.created, "flow_run_id": flow_run_id},
    )
    return summary


def _announce_failure(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Emit `open-connectors.instance.failed` when the authorization fails."""
    parameters = flow_run.parameters or {}
    instance_name = str(parameters.get("instance_name", ""))
    emit_authorization_failed(
        flow_run_id=str(flow_run.id),
        instance_name=instance_name,
        element_key=str(parameters.get("element_key", "")),
        block_name=parameters.get("instance_block") or block_name_for(instance_name),
        reason=state.message or "The authorization failed.",
    )


@flow(
    name="authenticate-connector-instance",
    flow_run_name="authorize-{instance_name}",
    on_failure=[_announce_failure],
    # The summary holds no secret; persisting it lets callers read it back.
    persist_result=True,
    result_serializer="json",
)
async def authenticate_connector_instance(
    instance_name: str,
    element_key: str = "infusionsofterp",
    configuration: dict[str, str] | None = None,
    tags: list[str] | None = None,
    credentials_block: str = DEFAULT_CREDENTIALS_BLOCK,
    oauth_app_block: str = DEFAULT_OAUTH_APP_BLOCK,
    secret_configuration: dict[str, str] | None = None,
    instance_block: str | None = None,
    authorization_timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES,
) -> AuthenticatedInstance:
    """Authorize a new Open Connectors connector instance through OAuth 2.0.

    Args:
        instance_name: The name of the new instance.
        element_key: The connector key (Infusionsoft ERP: `infusionsofterp`).
        configuration: Non-secret instance configuration, e.g.
            `{"infusionsoft.server": "dt123.infusionsoft.com"}`.
        tags: Tags of the instance.
        credentials_block: The `OpenConnectorsCredentials` block of the account.
        oauth_app_block: The `OAuthAppCredentials` block of the provider app.
        secret_configuration: Secret configuration by the name of the Prefect `Secret`
            block holding it, e.g. `{"infusionsoft.private.key": "infusionsoft-key"}`.
        instance_block: The `ConnectorInstance` block to save; derived from the name.
        authorization_timeout_minutes: How long to wait for the person's answer.

    Returns:
        Where to find the instance; the token is only in the block.
    """
    request = AuthorizationRequest.build(
        instance_name=instance_name,
        element_key=element_key,
        configuration=configuration,
        secret_configuration=secret_configuration,
        tags=tags,
        credentials_block=credentials_block,
        oauth_app_block=oauth_app_block,
        instance_block=instance_block,
        timeout_minutes=authorization_timeout_minutes,
    )
    blocks = await load_authorization_blocks(request, flow_run_id=str(_flow_run_id()))
    consent = await get_redirect_url(request, blocks)
    grant = await await_authorization(consent, request.timeout_seconds)
    if grant is None:
        # Prefect finds the suspension request first and ends this process
        # instead of failing the run; the flow runs again after the resume.
        raise AuthorizationPending("The run is suspended until the authorization arrives.")
    return await create_instance(request, blocks, grant)


async def _forget_answer(answer: AuthorizationResponse, run: FlowRun) -> None:
    """Delete the stored answer: Prefect keeps run input in plain text."""
    if answer.metadata.key:
        try:
            await adelete_flow_run_input(answer.metadata.key, flow_run_id=run.id)
        except Exception as exc:  # never lose the authorization over the clean-up
            get_run_logger().warning(
                "Could not delete the stored answer %r: %s", answer.metadata.key, type(exc).__name__
            )


def _check_consent_url(url: str, state: str, api_secret: SecretStr) -> None:
    """Refuse a consent URL that would leak the app's secret or lose the state."""
    if api_secret.get_secret_value() in url:
        raise OpenConnectorsError(
            "The platform returned a consent URL that contains the OAuth app's secret; it was "
            "not shown. Check the platform's OAuth settings for this connector."
        )
    if state not in url:
        raise OpenConnectorsError(
            "The platform returned a consent URL without this run's state, so the answer could "
            "not be checked. Check that the connector supports the state parameter."
        )
    if not url.startswith(("https://", "http://")):
        raise OpenConnectorsError("The platform returned a consent URL that is not http(s).")


def current_flow_run() -> FlowRun:
    """The flow run this code runs in.

    Raises:
        RuntimeError: Called outside a flow run (these tasks need their flow run).
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("This task runs only inside a flow run of this project.")
    return context.flow_run


def _flow_run_id() -> UUID:
    return current_flow_run().id


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    if seconds % 60 == 0:
        return f"{seconds // 60} minute(s)"
    return f"{seconds} second(s)"
