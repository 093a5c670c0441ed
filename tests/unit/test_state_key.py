"""The state key block: created once under concurrent first uses, rotated with previous keys kept.

`Block.aload`/`Block.asave` are replaced by an in-memory store that fails exactly
as Prefect's do (a ValueError raised from ObjectNotFound / ObjectAlreadyExists);
`tests/e2e/test_state_key.py` runs the same against a real Prefect server.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from blocks import DEFAULT_STATE_KEY_BLOCK, StateSigningKey
from blocks.state_key import MAX_PREVIOUS_KEYS
from open_connectors import UnknownStateKeyError
from open_connectors.authorization import key_id


class Store:
    """Saved block documents by name, with Prefect's failure shapes and a yield per call."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}
        self.saves = 0

    async def aload(self, cls: type[StateSigningKey], name: str, **_: Any) -> StateSigningKey:
        await asyncio.sleep(0)
        if name not in self.saved:
            try:
                raise ObjectNotFound(http_exc=Exception("404"))
            except ObjectNotFound as exc:
                raise ValueError(f"Unable to find block document named {name}") from exc
        return cls.model_validate(self.saved[name])

    async def asave(
        self, block: StateSigningKey, name: str, overwrite: bool = False, **_: Any
    ) -> UUID:
        await asyncio.sleep(0)  # let concurrent first uses interleave
        if name in self.saved and not overwrite:
            try:
                raise ObjectAlreadyExists(http_exc=Exception("409"))
            except ObjectAlreadyExists as exc:
                raise ValueError("a name that is already in use") from exc
        self.saves += 1
        self.saved[name] = {
            "current_key": block.current_key.get_secret_value(),
            "previous_keys": [key.get_secret_value() for key in block.previous_keys],
        }
        return uuid4()


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    store = Store()

    async def aload(cls: type[StateSigningKey], name: str, **kwargs: Any) -> StateSigningKey:
        return await store.aload(cls, name, **kwargs)

    async def asave(self: StateSigningKey, name: str, overwrite: bool = False, **_: Any) -> UUID:
        return await store.asave(self, name, overwrite)

    monkeypatch.setattr(StateSigningKey, "aload", classmethod(aload))
    monkeypatch.setattr(StateSigningKey, "asave", asave)
    return store


async def test_concurrent_first_uses_end_with_one_key(store: Store) -> None:
    keys = await asyncio.gather(*(StateSigningKey.aload_or_create() for _ in range(6)))
    assert len({key.current_key.get_secret_value() for key in keys}) == 1
    assert store.saves == 1 and list(store.saved) == [DEFAULT_STATE_KEY_BLOCK]
    assert len(keys[0].current_key.get_secret_value()) >= 40


async def test_other_failures_are_not_hidden(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("the block schema does not match")

    monkeypatch.setattr(StateSigningKey, "asave", broken)
    with pytest.raises(ValueError, match="schema"):
        await StateSigningKey.aload_or_create("fresh")


async def test_rotation_keeps_waiting_runs_valid_and_bounds_the_previous_keys(
    store: Store,
) -> None:
    original = await StateSigningKey.aload_or_create("keys")
    run = uuid4()
    state = original.signer().sign(run)
    rotated = await StateSigningKey.arotate("keys")
    assert rotated.previous_keys == [original.current_key]
    reloaded = (await StateSigningKey.aload("keys")).signer()
    assert reloaded.verify(state) == run
    assert reloaded.current_key_id == key_id(rotated.current_key) != original.current_key_id
    for _ in range(MAX_PREVIOUS_KEYS):
        await StateSigningKey.arotate("keys")
    final = await StateSigningKey.aload("keys")
    assert len(final.previous_keys) == MAX_PREVIOUS_KEYS
    with pytest.raises(UnknownStateKeyError):
        final.signer().verify(state)


def test_each_block_gets_its_own_random_key_and_masks_it() -> None:
    first, second = StateSigningKey(), StateSigningKey()
    assert first.current_key != second.current_key
    for text in (repr(first), first.model_dump_json()):
        assert first.current_key.get_secret_value() not in text
    with pytest.raises(ValueError):
        StateSigningKey(current_key="short")
    with pytest.raises(ValueError):
        StateSigningKey(previous_keys=["k" * 20] * (MAX_PREVIOUS_KEYS + 1))
