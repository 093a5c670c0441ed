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

# No `from __future__ import annotations` here: a served run gets its flow pickled by
# value (deployments/serve.py), and the parameters' types must travel with it.
from prefect import flow, get_run_logger, task
from pydantic import SecretStr

from blocks import ConnectorInstance, OAuthAppCredentials
from blocks.run_form import (
    Configuration,
    InstanceBlockName,
    OAuthAppBlockName,
    SecretConfiguration,
)
from flows.authenticate import await_authorization, get_redirect_url
from flows.steps.blocks import (
    AuthorizationBlocks,
    build_instance_body,
    load_block,
    load_secret_configuration,
)
from flows.steps.connector import read_connector_definition
from flows.steps.events import INSTANCE_REAUTHORIZED
from flows.steps.failure import announce_failure, platform_was_unavailable
from flows.steps.handover import InstanceSummary, hand_over
from flows.steps.instance_settings import InstanceSettings, settings_of_creating_run
from flows.steps.names import AUTHENTICATE_DEPLOYMENT, REAUTHORIZE_FLOW
from flows.steps.parameters import (
    DEFAULT_OAUTH_APP_BLOCK,
    DEFAULT_TIMEOUT_MINUTES,
    ConsentSubject,
    check_block_name,
    check_secret_configuration,
    check_timeout_minutes,
)
from flows.steps.run_identity import (
    AuthorizationPending,
    current_flow_run_id,
    reauthorization_tag,
)
from flows.steps.sent_marker import CodeSentMarker, send_at_most_once
from flows.steps.supervision import watch_supervision
from flows.steps.waiting import forget_unread_answers
from open_connectors import (
    AuthorizationGrant,
    ConfigurationError,
    Instance,
    InstanceGoneError,
    InstanceNotFoundError,
)
from open_connectors.connectors import prepare_configuration


class ReauthorizationParameters(ConsentSubject):
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


class ReauthorizedInstance(InstanceSummary):
    """What a re-authorization returns: where to find the instance. Never the token.

    Attributes:
        updated: False when an earlier attempt of the same run had already re-authorized it.
    """

    updated: bool = True


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
            f"{AUTHENTICATE_DEPLOYMENT} deployment; to reuse the block name "
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


@task(
    name="reauthorize_instance",
    persist_result=False,
    # Only what the client cannot do: outlive a longer outage. Each attempt reads the
    # instance for this run's mark first and never resends a code it may have used.
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=platform_was_unavailable,
)
async def reauthorize_instance(
    parameters: ReauthorizationParameters,
    blocks: AuthorizationBlocks,
    saved: ConnectorInstance,
    grant: AuthorizationGrant | None,
) -> ReauthorizedInstance:
    """Re-authorize the instance with the code (`PUT`, once), save its token, check it answers.

    With `grant=None` (a Retry after a lost answer) the instance is only read for
    this run's mark; the code is never sent twice.

    Raises:
        AuthorizationCodeRejectedError: The code expired or was used already.
        InstanceGoneError: The instance was deleted while the run waited.
        OpenConnectorsError: The instance was re-authorized but does not answer.
    """
    logger = get_run_logger()
    run_id = current_flow_run_id()
    mark = reauthorization_tag(run_id)
    body = build_instance_body(
        element_key=parameters.element_key,
        name=parameters.instance_name,
        configuration=parameters.configuration,
        tags=[],  # the client sends the instance's current tags with this run's mark
        blocks=blocks,
        code=grant.code if grant is not None else SecretStr(""),
    )
    async with blocks.credentials.get_client() as client:
        try:
            ensured = await send_at_most_once(
                CodeSentMarker(run_id, "reauthorization"),
                mark,
                lambda sent_before, on_send: client.ensure_reauthorized(
                    parameters.instance_id,
                    body,
                    mark_tag=mark,
                    sent_before=sent_before or grant is None,
                    on_send=on_send,
                ),
            )
        except InstanceNotFoundError:
            raise InstanceGoneError(
                f"Instance {parameters.instance_id} was deleted in Open Connectors while this run "
                "waited; it cannot be re-authorized. Authorize a new instance instead."
            ) from None
        instance, updated = ensured.instance, ensured.created
        if instance.token is None:
            # Some answers leave the token out; the instance's own read has it.
            instance = await client.get_instance(parameters.instance_id)
    logger.info(
        "%s instance %s (%r); its id is unchanged.",
        "Re-authorized" if updated else "An earlier attempt of this run re-authorized",
        instance.id,
        instance.name,
    )
    return await hand_over(
        instance,
        summary=ReauthorizedInstance,
        token=instance.token or saved.token,
        element_key=parameters.element_key,
        credentials=saved.credentials,
        block_name=parameters.instance_block,
        flow_run_id=str(run_id),
        event=INSTANCE_REAUTHORIZED,
        what_happened="re-authorized",
        advice="Check that it is enabled in Open Connectors.",
        updated=updated,
    )


@flow(
    name=REAUTHORIZE_FLOW,
    flow_run_name="reauthorize-{instance_block}",
    on_running=[watch_supervision],
    on_failure=[
        announce_failure(
            instance_name_parameter="instance_block",
            element_key_parameter=None,
            default_reason="The re-authorization failed.",
        ),
        forget_unread_answers,
    ],
    # A run that ends before reading its answer must not keep the code as run input.
    on_cancellation=[forget_unread_answers],
    on_crashed=[forget_unread_answers],
    # The summary holds no secret; persisting it lets callers read it back.
    persist_result=True,
    result_serializer="json",
)
async def reauthorize_connector_instance(
    instance_block: InstanceBlockName,
    oauth_app_block: OAuthAppBlockName = DEFAULT_OAUTH_APP_BLOCK,
    configuration: Configuration = None,
    secret_configuration: SecretConfiguration = None,
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
    spec = await read_connector_definition(saved.element_key, saved.credentials)
    secret_names = check_secret_configuration(settings.secret_configuration)
    parameters = ReauthorizationParameters(
        instance_name=instance.name,
        element_key=spec.key,
        connector_name=spec.name,
        instance_block=block_name,
        instance_id=instance.id,
        hub=spec.hub,
        configuration=prepare_configuration(spec, settings.configuration, list(secret_names)),
        secret_configuration=secret_names,
        oauth_app_block=oauth_app_block,
        timeout_seconds=timeout_seconds,
    )
    blocks = AuthorizationBlocks(
        credentials=saved.credentials,
        oauth_app=oauth_app,
        secret_configuration=await load_secret_configuration(secret_names),
    )
    if await CodeSentMarker(current_flow_run_id(), "reauthorization").exists():
        # A Retry after a lost answer: the code was sent; read the instance, never resend.
        return await reauthorize_instance(parameters, blocks, saved, None)
    consent = await get_redirect_url(parameters, blocks)
    grant = await await_authorization(
        consent, parameters.timeout_seconds, blocks.oauth_app.accept_bare_code
    )
    if grant is None:
        # As in the authorization: Prefect ends this process on the suspension
        # instead of failing the run; the flow runs again after the resume.
        raise AuthorizationPending("The run is suspended until the authorization arrives.")
    return await reauthorize_instance(parameters, blocks, saved, grant)
