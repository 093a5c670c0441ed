"""In-memory store of connector instances: ids, tokens and lookups."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from tooling.sandbox.elements import Element

FIRST_INSTANCE_ID = 10001


@dataclass
class ProviderGrant:
    """The provider tokens the platform keeps for an instance (never shown to callers).

    Attributes:
        access_token: The provider's access token.
        refresh_token: The provider's (rotating) refresh token.
        expires_at: When the access token expires, in epoch seconds.
    """

    access_token: str
    refresh_token: str
    expires_at: float


@dataclass
class Instance:
    """A connector instance, as the platform stores it.

    Attributes:
        id: The numeric id.
        name: The (sanitized) name; duplicates are allowed.
        element: The element the instance authenticates.
        token: The instance token callers send as `Element <token>`.
        tags: The (sanitized) tags.
        configuration: The configuration as given, secrets unmasked.
        grant: The provider tokens obtained with the authorization code (None for a
            connector that does not use OAuth 2.0).
        created_at: Creation time, epoch seconds.
        updated_at: Last change, epoch seconds.
        valid: False once the provider rejected the credentials (a failed refresh).
        disabled: True while the instance is disabled; hub calls answer 403.
        deleted: True once deleted; the token stops working.
        written_at: The last create or update, epoch seconds (lists lag behind it).
        previous_tags: The tags before the last change of tags (reads by id lag behind it).
        tags_changed_at: When the tags last changed, epoch seconds.
    """

    id: int
    name: str
    element: Element
    token: str
    tags: list[str]
    configuration: dict[str, Any]
    grant: ProviderGrant | None
    created_at: float
    updated_at: float
    valid: bool = True
    disabled: bool = False
    deleted: bool = False
    written_at: float = 0.0
    previous_tags: list[str] | None = None
    tags_changed_at: float = 0.0

    def listed_at(self, now: float, lag_seconds: float) -> bool:
        """Whether a list made at `now` shows the instance, lists lagging `lag_seconds`."""
        return now >= self.written_at + lag_seconds

    def tags_read_at(self, now: float, lag_seconds: float) -> list[str]:
        """The tags a read by id made at `now` shows, lagging `lag_seconds` behind changes."""
        if self.previous_tags is not None and now < self.tags_changed_at + lag_seconds:
            return list(self.previous_tags)
        return list(self.tags)


def new_instance_token() -> str:
    """Return a fresh instance token: base64 of 32 random bytes, like the platform's."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass
class InstanceStore:
    """Every instance of one sandbox, deleted ones included (they stay for the admin view)."""

    _instances: dict[int, Instance] = field(default_factory=dict)
    _by_token: dict[str, Instance] = field(default_factory=dict)
    _next_id: int = FIRST_INSTANCE_ID

    def add(
        self,
        *,
        name: str,
        element: Element,
        tags: list[str],
        configuration: dict[str, Any],
        grant: ProviderGrant | None,
        now: float,
    ) -> Instance:
        """Create and store a new instance with the next id and a fresh token."""
        instance = Instance(
            id=self._next_id,
            name=name,
            element=element,
            token=new_instance_token(),
            tags=tags,
            configuration=configuration,
            grant=grant,
            created_at=now,
            updated_at=now,
            written_at=now,
        )
        self._next_id += 1
        self._instances[instance.id] = instance
        self._by_token[instance.token] = instance
        return instance

    def get(self, instance_id: int) -> Instance | None:
        """Return the live (not deleted) instance with this id, or None."""
        instance = self._instances.get(instance_id)
        return None if instance is None or instance.deleted else instance

    def by_token(self, token: str) -> Instance | None:
        """Return the live instance with this token, or None."""
        return self._by_token.get(token)

    def live(self) -> list[Instance]:
        """Every instance not deleted, by id."""
        return [instance for instance in self._instances.values() if not instance.deleted]

    def everything(self) -> list[Instance]:
        """Every instance ever created, deleted ones included, by id."""
        return list(self._instances.values())

    def delete(self, instance: Instance) -> None:
        """Delete an instance: its token stops working at once."""
        instance.deleted = True
        self._by_token.pop(instance.token, None)
