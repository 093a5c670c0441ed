"""The blocks a flow needs, loaded and checked, with Prefect's errors turned into words.

A missing block is told from an unreadable one by the type of Prefect's error
(`ObjectNotFound` behind `Block.aload`'s ValueError), never by its message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import SecretStr, ValidationError

from blocks import ConnectorInstance, OAuthAppCredentials, OpenConnectorsCredentials
from blocks.prefect_client import prefect_client
from flows.steps.names import REAUTHORIZE_DEPLOYMENT
from flows.steps.parameters import AuthorizationParameters
from open_connectors import ConfigurationError, InstanceBlockTakenError, InstanceBody

B = TypeVar("B", bound=Block)


def block_is_missing(exc: BaseException) -> bool:
    """Whether an error of `Block.aload` means that no block has that name."""
    return isinstance(exc, ObjectNotFound) or isinstance(exc.__cause__, ObjectNotFound)


def block_name_taken(exc: BaseException) -> bool:
    """Whether an error of `Block.asave(overwrite=False)` means that the name is in use."""
    return isinstance(exc, ObjectAlreadyExists) or isinstance(exc.__cause__, ObjectAlreadyExists)


@dataclass(frozen=True)
class AuthorizationBlocks:
    """The blocks an authorization uses, loaded and checked."""

    credentials: OpenConnectorsCredentials
    oauth_app: OAuthAppCredentials
    secret_configuration: dict[str, SecretStr]


def build_instance_body(
    *,
    element_key: str,
    name: str,
    configuration: dict[str, str],
    tags: list[str],
    blocks: AuthorizationBlocks,
    code: SecretStr,
) -> InstanceBody:
    """The body of `POST /instances` (create) or `PUT /instances/{id}` (re-authorize).

    The instance configuration plus the OAuth app's key and callback URL; the app's
    secret and the Secret blocks' values travel as secrets until the body is built.
    """
    app = blocks.oauth_app
    return InstanceBody(
        element_key=element_key,
        name=name,
        code=code,
        configuration={
            **configuration,
            "oauth.api.key": app.api_key,
            "oauth.callback.url": app.callback_url,
        },
        secret_configuration={"oauth.api.secret": app.api_secret, **blocks.secret_configuration},
        tags=tags,
    )


async def load_authorization_blocks(
    parameters: AuthorizationParameters, *, flow_run_id: str | None = None
) -> AuthorizationBlocks:
    """Load the credentials, OAuth app and Secret blocks; refuse a taken instance block.

    Args:
        parameters: The checked parameters.
        flow_run_id: The current run; an instance block it saved itself may be overwritten.

    Raises:
        ConfigurationError: A block is missing or invalid, or the instance block is taken.
    """
    credentials = await load_block(
        OpenConnectorsCredentials, parameters.credentials_block, "credentials_block"
    )
    oauth_app = await load_block(OAuthAppCredentials, parameters.oauth_app_block, "oauth_app_block")
    secrets = await load_secret_configuration(parameters.secret_configuration)
    existing = await _load_optional(ConnectorInstance, parameters.instance_block)
    if existing is not None and (
        flow_run_id is None or existing.authorized_by_flow_run != flow_run_id
    ):
        raise ConfigurationError(
            f"The block '{parameters.instance_block}' already holds instance "
            f"{existing.instance_id} ({existing.element_key}, '{existing.instance_name}'). Give "
            "another instance_block, delete that block, or re-authorize that instance with the "
            f"{REAUTHORIZE_DEPLOYMENT} deployment."
        )
    return AuthorizationBlocks(credentials, oauth_app, secrets)


async def load_secret_configuration(names: dict[str, str]) -> dict[str, SecretStr]:
    """Load the Secret blocks named in `{configuration key: Secret block name}`.

    Raises:
        ConfigurationError: A Secret block is missing or invalid.
    """
    secrets: dict[str, SecretStr] = {}
    for key, block_name in names.items():
        secret = await load_block(Secret, block_name, f"secret_configuration[{key!r}]")
        secrets[key] = SecretStr(_secret_text(secret))
    return secrets


async def load_block(block_type: type[B], name: str, parameter: str) -> B:
    """Load a block by name, turning Prefect's errors into a message for the person.

    Args:
        block_type: The block class.
        name: The block document's name.
        parameter: The parameter that named it, quoted in the message.

    Raises:
        ConfigurationError: No such block, or it cannot be read as `block_type`.
    """
    try:
        return await block_type.aload(name)
    except (ValueError, RuntimeError) as exc:
        if block_is_missing(exc):
            raise ConfigurationError(
                f"No {block_type.get_block_type_name()} block named '{name}' ({parameter}). "
                "Create it in the Prefect UI under Blocks, or pass the name of an existing one."
            ) from None
        raise ConfigurationError(
            f"The block '{name}' ({parameter}) holds values that are not valid: "
            f"{_validation_problems(exc)}. Edit it in the Prefect UI under Blocks."
        ) from None


def _validation_problems(exc: BaseException) -> str:
    """What is wrong with a block's stored values, without quoting them (they may be secret)."""
    error = exc if isinstance(exc, ValidationError) else exc.__cause__
    if not isinstance(error, ValidationError):
        return type(exc).__name__
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)
    )


async def _load_optional(
    block_type: type[B], name: str, client: PrefectClient | None = None
) -> B | None:
    try:
        return await block_type.aload(name, client=client)
    except ValueError as exc:
        if block_is_missing(exc):
            return None
        raise ConfigurationError(
            f"The block '{name}' cannot be read as a {block_type.get_block_type_name()} block "
            f"({type(exc).__name__}); choose another instance_block or fix it in the Prefect UI."
        ) from None


async def save_instance_block(saved: ConnectorInstance, block_name: str) -> None:
    """Save an authorized instance in its block without overwriting another authorization's.

    The block is checked again right before the save (the run may have waited for
    hours since its first check): a new name is created atomically (`overwrite=False`),
    and a block is overwritten only when it holds the same instance or was saved by the
    same run. When another authorization took the name meanwhile, the instance is saved
    under `<block>-<instance id>` instead (it is never left without its token) and the
    run fails, naming both instances.

    Raises:
        InstanceBlockTakenError: The name holds another authorization's instance.
    """
    # The person who just authorized waits on these requests: a busy database's refusal
    # is asked again soon (`blocks.prefect_client`).
    async with prefect_client() as client:
        existing: ConnectorInstance | None = None
        for _ in range(3):
            existing = await _load_optional(ConnectorInstance, block_name, client)
            if existing is None:
                try:
                    await saved.asave(block_name, overwrite=False, client=client)
                    return
                except ValueError as exc:
                    if not block_name_taken(exc):
                        raise
                    continue  # saved by someone else in between: look at it
            if _same_authorization(existing, saved):
                await saved.asave(block_name, overwrite=True, client=client)
                return
            break
        assert existing is not None
        fallback = f"{block_name[:88].rstrip('-')}-{saved.instance_id}"
        held = await _load_optional(ConnectorInstance, fallback, client)
        await saved.asave(
            fallback, overwrite=held is None or _same_authorization(held, saved), client=client
        )
    raise InstanceBlockTakenError(
        f"The block '{block_name}' was taken while this run waited: it now holds instance "
        f"{existing.instance_id} ('{existing.instance_name}', authorized by flow run "
        f"{existing.authorized_by_flow_run or 'unknown'}). Instance {saved.instance_id} "
        f"('{saved.instance_name}') of this run was saved in the block '{fallback}' instead, "
        "so nothing is lost. Rename that block in the Prefect UI (or keep it), and give each "
        "authorization its own instance_block name."
    )


def _same_authorization(existing: ConnectorInstance, saved: ConnectorInstance) -> bool:
    """Whether overwriting `existing` with `saved` replaces nothing of someone else's."""
    same_run = (
        existing.authorized_by_flow_run is not None
        and existing.authorized_by_flow_run == saved.authorized_by_flow_run
    )
    same_instance = (
        existing.instance_id == saved.instance_id
        and existing.credentials.base_url == saved.credentials.base_url
    )
    return same_run or same_instance


def _secret_text(secret: Secret) -> str:
    # Secret.get() parses JSON-looking values (a numeric key would become an int): keep text.
    raw = secret.value.get_secret_value()
    return raw if isinstance(raw, str) else json.dumps(raw)
