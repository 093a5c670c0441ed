"""Authenticate an Open Connectors connector instance through OAuth 2.0, as a Prefect flow.

    read_connector_definition ──▶ get_redirect_url ──▶ await_authorization ──▶ create_instance
    (GET /elements/{key}:         (consent link)       (the run waits for       (POST /instances,
     configuration checked)                             the person's answer)      token saved, ping)

Started from a deployment, the run *suspends* while it waits: no process is held,
and after the answer arrives the flow runs again from the top. Everything before
the wait therefore gives the same result the second time: the state is derived
from the run id, and the consent link is cached per run. Started directly (a
script, a test), the run *pauses* in its process and polls every 2 seconds.
"""

# No `from __future__ import annotations` here: a served run gets its flow pickled by
# value (deployments/serve.py), and the parameters' types must travel with it.
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_link_artifact
from prefect.context import TaskRunContext
from pydantic import SecretStr

from blocks.run_form import (
    Configuration,
    ConnectorKey,
    CredentialsBlockName,
    OAuthAppBlockName,
    SecretConfiguration,
    Tags,
)
from flows.steps.blocks import (
    AuthorizationBlocks,
    build_instance_body,
    load_authorization_blocks,
)
from flows.steps.connector import read_connector_definition
from flows.steps.consent import ConsentLink, markdown_text
from flows.steps.events import INSTANCE_CREATED
from flows.steps.failure import announce_failure, platform_was_unavailable
from flows.steps.handover import InstanceSummary, hand_over
from flows.steps.names import AUTHENTICATE_FLOW, REAUTHORIZE_DEPLOYMENT
from flows.steps.parameters import (
    DEFAULT_CREDENTIALS_BLOCK,
    DEFAULT_OAUTH_APP_BLOCK,
    DEFAULT_TIMEOUT_MINUTES,
    AuthorizationParameters,
    ConsentSubject,
)
from flows.steps.run_identity import AuthorizationPending, current_flow_run_id, run_tag
from flows.steps.run_state_key import run_state_key
from flows.steps.sent_marker import CodeSentMarker, send_at_most_once
from flows.steps.supervision import watch_supervision
from flows.steps.waiting import forget_unread_answers, wait_for_answer
from open_connectors import (
    AuthorizationGrant,
    InstanceCheckFailedError,
)
from open_connectors.consent_url import check_consent_url
from open_connectors.redaction import redact_url


class AuthenticatedInstance(InstanceSummary):
    """What an authorization returns: where to find the instance. Never the token.

    Attributes:
        created: False when an earlier attempt of the same run had already created it.
    """

    created: bool = True


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
async def get_redirect_url(subject: ConsentSubject, blocks: AuthorizationBlocks) -> ConsentLink:
    """Ask Open Connectors for the provider's consent link, with this run's state.

    The link is logged, published as a link artifact and returned; it holds the
    OAuth app's public client id and the state, never a secret. Used by new
    authorizations and re-authorizations alike.
    """
    logger = get_run_logger()
    app = blocks.oauth_app
    state_key = await run_state_key()
    state = state_key.signer().sign(current_flow_run_id())
    async with blocks.credentials.get_client() as client:
        answer = await client.get_oauth_url(
            subject.element_key,
            api_key=app.api_key,
            api_secret=app.api_secret,
            callback_url=app.callback_url,
            state=state,
            scope=app.scope,
        )
    url = check_consent_url(
        answer.oauth_url,
        state=state,
        secrets=[app.api_secret, blocks.credentials.user_secret, state_key.current_key],
    )
    connector = subject.connector_name
    consent = ConsentLink(
        url=url,
        state=state,
        instance_name=subject.instance_name,
        connector_name=connector,
        element_key=subject.element_key,
        instance_block=subject.instance_block,
    )
    logger.info(
        "Consent link for the %s instance %r (send it to the account owner): %s",
        connector,
        subject.instance_name,
        redact_url(url),
    )
    what = f"the {markdown_text(connector)} instance “{markdown_text(subject.instance_name)}”"
    await acreate_link_artifact(
        link=url,
        link_text=f"Authorize {what}",
        key=f"consent-link-{subject.instance_block}",
        description=f"Open this link to authorize {what}. It stays valid while the run waits.",
    )
    return consent


@task(name="await_authorization", persist_result=False)
async def await_authorization(
    consent: ConsentLink, timeout_seconds: int, accept_bare_code: bool = False
) -> AuthorizationGrant | None:
    """Wait for the person's answer and check it.

    Suspends the run when it was started from a deployment (returns None on that
    first pass; Prefect stops the run at its next step and runs the flow again after
    the resume), and pauses in process otherwise. An empty or malformed answer gets
    the form shown again, at most three times. The answer must carry this run's
    state, unless `accept_bare_code` (the OAuth app block's opt-in). A code this run
    already received is refused. The stored answer is deleted once read: Prefect
    keeps run input in plain text.

    Raises:
        AuthorizationDeniedError: The person refused.
        StateMismatchError: The answer belongs to another authorization.
        AuthorizationTimeoutError: Nobody answered in time (direct runs).
        InvalidAuthorizationAnswerError: No usable answer after three prompts.
    """
    return await wait_for_answer(consent, timeout_seconds, accept_bare_code=accept_bare_code)


@task(
    name="create_instance",
    persist_result=False,
    # Only what the client cannot do: outlive a longer outage. Each attempt looks the
    # run's instance up first and never resends a code the platform may have used.
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=platform_was_unavailable,
)
async def create_instance(
    parameters: AuthorizationParameters,
    blocks: AuthorizationBlocks,
    grant: AuthorizationGrant | None,
) -> AuthenticatedInstance:
    """Create the instance with the code, save its token in a block, and check it answers.

    Exactly once per run: the instance is tagged with the run id and looked up
    before any creation, so a retry or replay adopts it instead of creating another;
    after an ambiguous answer the code is never sent again (the client looks the
    instance up instead, and a note on the run keeps a Retry from sending it). With
    `grant=None` (a Retry after such an answer) the instance is only looked up. The
    token is saved before the check, so a created instance is never lost.

    Raises:
        AuthorizationCodeRejectedError: The code expired or was used already.
        InstanceOutcomeUnknownError: The answer was lost and the instance did not show;
            a Retry of this run adopts it.
        InstanceCheckFailedError: The instance was saved but does not answer.
    """
    logger = get_run_logger()
    run_id = current_flow_run_id()
    tag = run_tag(run_id)
    body = build_instance_body(
        element_key=parameters.element_key,
        name=parameters.instance_name,
        configuration=parameters.configuration,
        tags=parameters.tags,
        blocks=blocks,
        code=grant.code if grant is not None else SecretStr(""),
    )
    async with blocks.credentials.get_client() as client:
        ensured = await send_at_most_once(
            CodeSentMarker(run_id, "creation"),
            tag,
            lambda sent_before, on_send: client.ensure_instance(
                body, run_tag=tag, sent_before=sent_before or grant is None, on_send=on_send
            ),
        )
    instance = ensured.instance
    if instance.token is None:
        raise InstanceCheckFailedError(
            f"Open Connectors created instance {instance.id} but returned no token; re-authorize "
            f"it with the {REAUTHORIZE_DEPLOYMENT} deployment."
        )
    logger.info(
        "%s instance %s (%r).",
        "Created" if ensured.created else "Found the instance this run created earlier:",
        instance.id,
        instance.name,
    )
    return await hand_over(
        instance,
        summary=AuthenticatedInstance,
        token=instance.token,
        element_key=parameters.element_key,
        credentials=blocks.credentials,
        block_name=parameters.instance_block,
        flow_run_id=str(run_id),
        event=INSTANCE_CREATED,
        what_happened="created",
        advice=(
            f"Re-authorize instance {instance.id} ({REAUTHORIZE_DEPLOYMENT}) rather than "
            "creating another."
        ),
        created=ensured.created,
    )


@flow(
    name=AUTHENTICATE_FLOW,
    flow_run_name="authenticate-{instance_name}",
    on_running=[watch_supervision],
    on_failure=[
        announce_failure(
            instance_name_parameter="instance_name",
            element_key_parameter="element_key",
            default_reason="The authorization failed.",
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
async def authenticate_connector_instance(
    instance_name: str,
    element_key: ConnectorKey = "infusionsofterp",
    configuration: Configuration = None,
    tags: Tags = [],  # noqa: B006 - the run form's default; pydantic copies it per call
    credentials_block: CredentialsBlockName = DEFAULT_CREDENTIALS_BLOCK,
    oauth_app_block: OAuthAppBlockName = DEFAULT_OAUTH_APP_BLOCK,
    secret_configuration: SecretConfiguration = None,
    instance_block: str = "",
    authorization_timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES,
) -> AuthenticatedInstance:
    """Authorize a new Open Connectors connector instance through OAuth 2.0.

    Args:
        instance_name: The name of the new instance.
        element_key: The connector key (Infusionsoft ERP: `infusionsofterp`); the run form
            offers the catalogue by name (`Infusionsoft ERP (infusionsofterp)`).
        configuration: Non-secret instance configuration, e.g.
            `{"infusionsoft.server": "dt123.infusionsoft.com"}`.
        tags: Tags of the instance.
        credentials_block: The `OpenConnectorsCredentials` block of the account.
        oauth_app_block: The `OAuthAppCredentials` block of the provider app.
        secret_configuration: Secret configuration by the name of the Prefect `Secret`
            block holding it, e.g. `{"infusionsoft.private.key": "infusionsoft-key"}`.
        instance_block: The `ConnectorInstance` block to save; empty to derive it from the name.
        authorization_timeout_minutes: How long to wait for the person's answer.

    Returns:
        Where to find the instance; the token is only in the block.
    """
    parameters = AuthorizationParameters.build(
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
    run_id = current_flow_run_id()
    blocks = await load_authorization_blocks(parameters, flow_run_id=str(run_id))
    spec = await read_connector_definition(parameters.element_key, blocks.credentials)
    parameters = parameters.for_connector(spec)
    if await CodeSentMarker(run_id, "creation").exists():
        # A Retry after an answer that got lost: the code was sent and may have been
        # used. Never ask again nor resend: look the instance up and adopt it.
        get_run_logger().info(
            "An earlier attempt of this run sent its code; looking for the instance it created."
        )
        return await create_instance(parameters, blocks, None)
    consent = await get_redirect_url(parameters, blocks)
    grant = await await_authorization(
        consent, parameters.timeout_seconds, blocks.oauth_app.accept_bare_code
    )
    if grant is None:
        # Prefect finds the suspension request first and ends this process
        # instead of failing the run; the flow runs again after the resume.
        raise AuthorizationPending("The run is suspended until the authorization arrives.")
    return await create_instance(parameters, blocks, grant)
