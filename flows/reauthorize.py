"""Re-authorize a saved connector instance with a new code, keeping its id.

    resolve settings ──▶ get_redirect_url ──▶ await_authorization ──▶ reauthorize_instance
    (the instance, its     (consent link,       (suspends until the      (PUT /instances/{id},
     configuration)         this run's state)    person answers)           token saved, ping)

The consent and waiting steps are the authorization's own tasks, so the run
behaves the same way: started from a deployment it suspends while it waits, and
the re-run after the resume shows the same link with the same state. The `PUT`
is made once per run: it tags the instance with `prefect-reauthorized-by-<run id>`,
and every attempt reads the instance first, so a retry after a lost answer adopts
the re-authorization instead of sending the single-use code again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.client.schemas.objects import FlowRun, State
from pydantic import BaseModel

from blocks import ConnectorInstance, OAuthAppCredentials
from flows.authenticate import (
    DEFAULT_TIMEOUT_MINUTES,
    AuthorizationPending,
    await_authorization,
    current_flow_run,
    get_redirect_url,
)
from flows.events import emit_authorization_failed, emit_instance_event
from flows.handover import save_and_check
from flows.instance_settings import InstanceSettings, settings_of_creating_run
from flows.request import (
    DEFAULT_OAUTH_APP_BLOCK,
    AuthorizationBlocks,
    ConsentSubject,
    build_instance_request,
    check_block_name,
    check_secret_configuration,
    check_timeout_minutes,
    load_block,
    load_secret_configuration,
)
from open_connectors import (
    AuthorizationGrant,
    ConfigurationError,
    Instance,
    InstanceNotFoundError,
    InstanceRequest,
    OpenConnectorsClient,
    OpenConnectorsError,
    PlatformUnavailableError,
    profile_for,
)
from open_connectors.connectors import prepare_configuration

INSTANCE_REAUTHORIZED = "open-connectors.instance.reauthorized"
REAUTHORIZATION_TAG_PREFIX = "prefect-reauthorized-by-"
PUT_ATTEMPTS = 3
PUT_RETRY_SECONDS = 2.0


class InstanceGoneError(OpenConnectorsError):
    """The instance no longer exists in Open Connectors, so it cannot keep its id."""


class ReauthorizationRequest(ConsentSubject):
    """What one re-authorization sends, checked and normalized.

    Attributes:
        instance_id: The id the instance keeps.
        hub: The connector's hub, for the ping.
        configuration: Non-secret configuration sent again with the new code.
        secret_configuration: Secret configuration by Secret block name.
        oauth_app_block: The OAuth app block.
        timeout_seconds: How long to wait for the person's answer.
    """

    instance_id: int
    hub: str
    configuration: dict[str, str]
    secret_configuration: dict[str, str]
    oauth_app_block: str
    timeout_seconds: int


class ReauthorizedInstance(BaseModel):
    """What a re-authorization returns: where to find the instance. Never the token.

    Attributes:
        instance_id: The instance id, the same as before.
        instance_name: The instance name.
        element_key: The connector key.
        block_name: The `ConnectorInstance` block, now holding the current token.
        updated: False when an earlier attempt of the same run had already re-authorized it.
    """

    instance_id: int
    instance_name: str
    element_key: str
    block_name: str
    updated: bool = True


def reauthorization_tag(flow_run_id: str) -> str:
    """The tag that marks an instance re-authorized by one flow run."""
    return f"{REAUTHORIZATION_TAG_PREFIX}{flow_run_id}"


def tags_after_reauthorization(current: list[str], flow_run_id: str) -> list[str]:
    """The instance's tags with this run's mark in place of earlier ones.

    `PUT` replaces tags wholesale, so every other tag (the person's, and the
    `prefect-flow-run-<id>` of the run that created the instance) is sent back.
    """
    kept = [tag for tag in current if not tag.startswith(REAUTHORIZATION_TAG_PREFIX)]
    return [*kept, reauthorization_tag(flow_run_id)]


async def reauthorize_once(
    client: OpenConnectorsClient,
    instance_id: int,
    request: InstanceRequest,
    *,
    flow_run_id: str,
    attempts: int = PUT_ATTEMPTS,
    retry_seconds: float = PUT_RETRY_SECONDS,
) -> tuple[Instance, bool]:
    """Send `PUT /instances/{id}` with the code at most once for this run.

    Every attempt reads the instance first: if it carries this run's mark, an
    earlier attempt's `PUT` went through (its answer may have been lost) and is
    adopted. The code is sent again only after a failure in which the platform
    cannot have used it, which the next read tells.

    Returns:
        The instance after the re-authorization, and whether this call made it.

    Raises:
        InstanceNotFoundError: The instance does not exist.
        AuthorizationCodeRejectedError: The provider refused the code.
        PlatformUnavailableError: The platform kept failing.
    """
    mark = reauthorization_tag(flow_run_id)
    last_error: PlatformUnavailableError | None = None
    for attempt in range(1, attempts + 1):
        current = await client.get_instance(instance_id)
        if mark in current.tags:
            return current, False
        body = request.model_copy(
            update={"tags": tags_after_reauthorization(current.tags, flow_run_id)}
        )
        try:
            return await client.reauthorize_instance(instance_id, body), True
        except PlatformUnavailableError as exc:
            last_error = exc
            if attempt < attempts:
                await asyncio.sleep(retry_seconds * attempt)
    assert last_error is not None
    raise last_error


@task(name="resolve_instance_settings", persist_result=False)
async def resolve_instance_settings(
    saved: ConnectorInstance,
    instance_block: str,
    configuration: dict[str, str] | None,
    secret_configuration: dict[str, str] | None,
) -> tuple[Instance, InstanceSettings]:
    """Read the instance from the platform and decide which configuration to send again.

    Given parameters win; otherwise the parameters of the run that created the instance.

    Raises:
        InstanceGoneError: The instance was deleted: it cannot keep its id.
        ConfigurationError: No configuration given and none found.
    """
    logger = get_run_logger()
    try:
        async with saved.credentials.get_client() as client:
            instance = await client.get_instance(saved.instance_id)
    except InstanceNotFoundError:
        raise InstanceGoneError(
            f"Instance {saved.instance_id} ('{saved.instance_name}', block '{instance_block}') "
            "no longer exists in Open Connectors (it was deleted), so it cannot be "
            "re-authorized under the same id. Authorize a new instance with the "
            f"authenticate-infusionsoft-erp deployment; to reuse the block name "
            f"'{instance_block}', delete that block first."
        ) from None
    if instance.element is not None and instance.element.key != saved.element_key:
        raise ConfigurationError(
            f"The block '{instance_block}' says instance {instance.id} is a "
            f"{saved.element_key} instance, but Open Connectors says "
            f"{instance.element.key}; fix or delete the block."
        )
    created_with = None
    if configuration is None or secret_configuration is None:
        created_with = await settings_of_creating_run(instance.tags)
    if configuration is not None:
        chosen, source = configuration, "this run's parameters"
    elif created_with is not None:
        chosen, source = created_with.configuration, created_with.source
    else:
        raise ConfigurationError(
            f"Instance {instance.id} was not created by a run of this project that still "
            "exists, so its configuration is unknown. Start the re-authorization with the "
            'configuration parameter, e.g. {"infusionsoft.server": "dt123.infusionsoft.com"}.'
        )
    if secret_configuration is not None:
        secrets = secret_configuration
    else:
        secrets = created_with.secret_configuration if created_with else {}
    settings = InstanceSettings(configuration=chosen, secret_configuration=secrets, source=source)
    logger.info(
        "Re-authorizing instance %s (%r) with the configuration of %s.",
        instance.id,
        instance.name,
        settings.source,
    )
    return instance, settings


def _transient_failure(task: Any, task_run: Any, state: State) -> bool:
    """Retry `reauthorize_instance` only when the platform was briefly unavailable."""
    return isinstance(state.data, PlatformUnavailableError)


@task(
    name="reauthorize_instance",
    persist_result=False,
    # Safe to retry: each attempt looks for this run's mark before sending the code.
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=_transient_failure,
)
async def reauthorize_instance(
    request: ReauthorizationRequest,
    blocks: AuthorizationBlocks,
    saved: ConnectorInstance,
    grant: AuthorizationGrant,
) -> ReauthorizedInstance:
    """Re-authorize the instance with the code (`PUT`, once), save its token, check it answers.

    Raises:
        AuthorizationCodeRejectedError: The code expired or was used already.
        InstanceGoneError: The instance was deleted while the run waited.
        OpenConnectorsError: The instance was re-authorized but does not answer.
    """
    logger = get_run_logger()
    flow_run_id = str(current_flow_run().id)
    body = build_instance_request(
        element_key=request.element_key,
        name=request.instance_name,
        configuration=request.configuration,
        tags=[],  # set from the instance's current tags by reauthorize_once
        blocks=blocks,
        code=grant.code,
    )
    async with blocks.credentials.get_client() as client:
        try:
            instance, updated = await reauthorize_once(
                client, request.instance_id, body, flow_run_id=flow_run_id
            )
        except InstanceNotFoundError:
            raise InstanceGoneError(
                f"Instance {request.instance_id} was deleted in Open Connectors while this run "
                "waited; it cannot be re-authorized. Authorize a new instance instead."
            ) from None
        if instance.token is None:
            # Some answers leave the token out; the instance's own read has it.
            instance = await client.get_instance(request.instance_id)
    logger.info(
        "%s instance %s (%r); its id is unchanged.",
        "Re-authorized" if updated else "An earlier attempt of this run re-authorized",
        instance.id,
        instance.name,
    )
    await save_and_check(
        instance,
        token=instance.token or saved.token,
        element_key=request.element_key,
        credentials=saved.credentials,
        block_name=request.instance_block,
        flow_run_id=flow_run_id,
        what_happened="re-authorized",
        advice="Check that it is enabled in Open Connectors.",
    )
    summary = ReauthorizedInstance(
        instance_id=instance.id,
        instance_name=instance.name,
        element_key=request.element_key,
        block_name=request.instance_block,
        updated=updated,
    )
    emit_instance_event(
        INSTANCE_REAUTHORIZED,
        instance_id=summary.instance_id,
        instance_name=summary.instance_name,
        element_key=summary.element_key,
        block_name=summary.block_name,
        payload={"updated": updated, "flow_run_id": flow_run_id},
    )
    return summary


def _announce_failure(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Emit `open-connectors.instance.failed` when the re-authorization fails."""
    parameters = flow_run.parameters or {}
    block_name = str(parameters.get("instance_block", ""))
    emit_authorization_failed(
        flow_run_id=str(flow_run.id),
        instance_name=block_name,
        element_key="",
        block_name=block_name or None,
        reason=state.message or "The re-authorization failed.",
    )


@flow(
    name="reauthorize-connector-instance",
    flow_run_name="reauthorize-{instance_block}",
    on_failure=[_announce_failure],
    # The summary holds no secret; persisting it lets callers read it back.
    persist_result=True,
    result_serializer="json",
)
async def reauthorize_connector_instance(
    instance_block: str,
    oauth_app_block: str = DEFAULT_OAUTH_APP_BLOCK,
    configuration: dict[str, str] | None = None,
    secret_configuration: dict[str, str] | None = None,
    authorization_timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES,
) -> ReauthorizedInstance:
    """Re-authorize a saved Open Connectors instance with a new code; its id stays the same.

    Use it when the instance stopped answering because the provider's grant was
    revoked or expired. The run shows a consent link and waits (suspended) for the
    account owner, like a new authorization, then sends `PUT /instances/{id}` with
    the new code and saves the instance's token in its block.

    Args:
        instance_block: The `ConnectorInstance` block of the instance.
        oauth_app_block: The `OAuthAppCredentials` block of the provider app.
        configuration: Non-secret configuration to send again, e.g.
            `{"infusionsoft.server": "dt123.infusionsoft.com"}`; empty to reuse the
            configuration the instance was created with.
        secret_configuration: Secret configuration by the name of the Prefect `Secret`
            block holding it; empty to reuse the one the instance was created with.
        authorization_timeout_minutes: How long to wait for the person's answer.

    Returns:
        Where to find the instance; the token is only in the block.
    """
    block_name = check_block_name(instance_block, "instance_block")
    timeout_seconds = check_timeout_minutes(authorization_timeout_minutes)
    check_block_name(oauth_app_block, "oauth_app_block")
    if secret_configuration is not None:
        secret_configuration = check_secret_configuration(secret_configuration)
    saved = await load_block(ConnectorInstance, block_name, "instance_block")
    oauth_app = await load_block(OAuthAppCredentials, oauth_app_block, "oauth_app_block")
    instance, settings = await resolve_instance_settings(
        saved, block_name, configuration, secret_configuration
    )
    profile = profile_for(saved.element_key)
    secret_names = check_secret_configuration(settings.secret_configuration)
    request = ReauthorizationRequest(
        instance_name=instance.name,
        element_key=profile.key,
        instance_block=block_name,
        instance_id=instance.id,
        hub=profile.hub,
        configuration=prepare_configuration(profile, settings.configuration, list(secret_names)),
        secret_configuration=secret_names,
        oauth_app_block=oauth_app_block,
        timeout_seconds=timeout_seconds,
    )
    blocks = AuthorizationBlocks(
        credentials=saved.credentials,
        oauth_app=oauth_app,
        secret_configuration=await load_secret_configuration(secret_names),
    )
    consent = await get_redirect_url(request, blocks)
    grant = await await_authorization(consent, request.timeout_seconds)
    if grant is None:
        # As in the authorization: Prefect ends this process on the suspension
        # instead of failing the run; the flow runs again after the resume.
        raise AuthorizationPending("The run is suspended until the authorization arrives.")
    return await reauthorize_instance(request, blocks, saved, grant)
