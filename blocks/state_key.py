"""The state key: the project's own key that signs every authorization's OAuth `state`.

Not the OAuth client secret (the provider and the platform know that one, and
rotating it would break every waiting run). Generated with `secrets` on first use,
kept in a Prefect block (encrypted at rest like every block), and rotated with
`StateSigningKey.arotate`: the previous keys stay accepted, so runs already
waiting still complete.
"""

from __future__ import annotations

import secrets
from typing import Self

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import Field, SecretStr, field_validator

from blocks.credentials import DOCUMENTATION_URL
from blocks.schema_cache import CachedSchema
from open_connectors.authorization import StateSigner, key_id

DEFAULT_STATE_KEY_BLOCK = "open-connectors-state-key"
MAX_PREVIOUS_KEYS = 3
_KEY_BYTES = 32


def new_state_key() -> SecretStr:
    """A fresh random state key (256 bits, URL-safe text)."""
    return SecretStr(secrets.token_urlsafe(_KEY_BYTES))


class StateSigningKey(CachedSchema, Block):
    """The key that signs authorization states, and the previous keys still accepted.

    Load it with `await StateSigningKey.aload_or_create()` (it is created on first
    use) and sign with `.signer()`. Rotate with `await StateSigningKey.arotate()`:
    states signed with the last keys (up to three) keep verifying, older ones get
    "this link was signed with a key that was rotated out".

    Example:
        ```python
        from blocks import StateSigningKey

        state_key = StateSigningKey.load("BLOCK_NAME")
        state = state_key.signer().sign(flow_run_id)
        # in async code, created on first use:
        signer = (await StateSigningKey.aload_or_create("BLOCK_NAME")).signer()
        ```
    """

    _block_type_name = "Open Connectors State Key"
    _block_type_slug = "open-connectors-state-key"
    _documentation_url = DOCUMENTATION_URL

    current_key: SecretStr = Field(
        default_factory=new_state_key,
        title="Current key",
        description="Signs new authorization states. Generated; never type one in by hand.",
    )
    previous_keys: list[SecretStr] = Field(
        default_factory=list,
        max_length=MAX_PREVIOUS_KEYS,
        title="Previous keys",
        description=(
            "Keys rotated out but still accepted, newest first, so that runs already waiting "
            f"still complete (at most {MAX_PREVIOUS_KEYS})."
        ),
    )

    @field_validator("current_key")
    @classmethod
    def _check_current_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("The current state key is shorter than 16 characters.")
        return value

    @property
    def current_key_id(self) -> str:
        """The public id of the current key (it appears in every state it signs)."""
        return key_id(self.current_key)

    def signer(self) -> StateSigner:
        """A signer with the current key and the previous keys."""
        return StateSigner(self.current_key, self.previous_keys)

    @classmethod
    async def aload_or_create(
        cls, name: str = DEFAULT_STATE_KEY_BLOCK, *, client: PrefectClient | None = None
    ) -> Self:
        """The saved state key, created with a fresh key on first use.

        Concurrent first uses end with one key: the save never overwrites, and the
        one that loses the race loads the winner's.
        """
        try:
            return await cls.aload(name, client=client)
        except ValueError as exc:
            if not _is_missing(exc):
                raise
        created = cls()
        try:
            await created.asave(name, overwrite=False, client=client)
        except ValueError as exc:
            if not isinstance(exc.__cause__, ObjectAlreadyExists):
                raise
            return await cls.aload(name, client=client)
        return created

    @classmethod
    async def arotate(
        cls, name: str = DEFAULT_STATE_KEY_BLOCK, *, client: PrefectClient | None = None
    ) -> Self:
        """Make a new current key; the old one joins the accepted previous keys.

        Returns:
            The saved block. Keys beyond the newest three previous ones are dropped.
        """
        saved = await cls.aload_or_create(name, client=client)
        rotated = cls(
            current_key=new_state_key(),
            previous_keys=[saved.current_key, *saved.previous_keys][:MAX_PREVIOUS_KEYS],
        )
        await rotated.asave(name, overwrite=True, client=client)
        return rotated


def _is_missing(exc: ValueError) -> bool:
    """Whether `Block.aload` failed because no block of that name exists.

    Prefect raises a ValueError from the client's ObjectNotFound.
    """
    return isinstance(exc.__cause__, ObjectNotFound)
