"""The blocks build their JSON schema once: the same schema and secrets, a fraction of the work."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from prefect.blocks.core import Block
from pydantic import SecretStr
from pydantic.json_schema import GenerateJsonSchema

from blocks import (
    ConnectorInstance,
    OAuthAppCredentials,
    OpenConnectorsCredentials,
    StateSigningKey,
)
from blocks.schema_cache import CachedSchema

BLOCKS = [OpenConnectorsCredentials, OAuthAppCredentials, ConnectorInstance, StateSigningKey]


def instance() -> ConnectorInstance:
    return ConnectorInstance(
        instance_id=7,
        instance_name="Sales",
        element_key="infusionsofterp",
        token=SecretStr("instance-token"),
        credentials=OpenConnectorsCredentials(
            base_url="https://api.example.test/elements/api-v2",
            user_secret="user-s",
            organization_secret="org-s",
        ),
        authorized_by_flow_run="run-1",
    )


@pytest.mark.parametrize("block_type", BLOCKS)
def test_the_schema_is_the_one_prefect_builds(block_type: type[Block]) -> None:
    uncached = Block.model_json_schema.__func__(block_type)  # type: ignore[attr-defined]
    assert block_type.model_json_schema() == uncached
    assert issubclass(block_type, CachedSchema)


def test_a_caller_changing_its_schema_changes_no_one_elses() -> None:
    schema = ConnectorInstance.model_json_schema()
    schema["secret_fields"].clear()
    schema["properties"].pop("token")
    again = ConnectorInstance.model_json_schema()
    assert "token" in again["properties"]
    assert "token" in again["secret_fields"]


def test_saving_an_instance_builds_its_schema_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # As after registration (restored afterwards, for the tests that register for real).
    for block_type in (ConnectorInstance, OpenConnectorsCredentials):
        monkeypatch.setattr(block_type, "_block_schema_id", uuid4())
        monkeypatch.setattr(block_type, "_block_type_id", uuid4())
    saved = instance()
    saved._to_block_document(name="sales", include_secrets=True)  # the first builds them
    builds = 0
    generate = GenerateJsonSchema.generate

    def counted(self: GenerateJsonSchema, *args: Any, **kwargs: Any) -> Any:
        nonlocal builds
        builds += 1
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerateJsonSchema, "generate", counted)
    for _ in range(3):
        document = saved._to_block_document(name="sales", include_secrets=True)
        dumped = saved.model_dump(mode="json")
    assert builds == 0  # Prefect alone: about 40 per save
    # Secrets still travel to the server on save, and stay masked in a plain dump.
    assert document.data["token"] == "instance-token"
    assert document.data["credentials"]["user_secret"] == "user-s"
    assert dumped["token"] != "instance-token"
    assert dumped["credentials"]["organization_secret"] != "org-s"
