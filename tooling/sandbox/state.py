"""The state of one sandbox app, shared by its routes and middleware."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request

from tooling.sandbox.clock import Clock
from tooling.sandbox.config import SandboxConfig
from tooling.sandbox.faults import FaultRules
from tooling.sandbox.journal import RequestJournal
from tooling.sandbox.oauth_server import OAuthServer
from tooling.sandbox.store import InstanceStore


@dataclass
class SandboxState:
    """Everything one sandbox holds in memory.

    Attributes:
        config: The configuration.
        clock: The clock (injectable for tests).
        oauth: The provider's codes and refresh tokens.
        store: The platform's instances.
        journal: The request journal of the admin API.
        faults: The fault rules and added latency (see faults.py).
        lock: Serializes changes to instances, grants and fault rules.
    """

    config: SandboxConfig
    clock: Clock
    oauth: OAuthServer
    store: InstanceStore = field(default_factory=InstanceStore)
    journal: RequestJournal = field(default_factory=RequestJournal)
    faults: FaultRules = field(default_factory=FaultRules)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def get_state(request: Request) -> SandboxState:
    """Return the sandbox state of the app serving `request`."""
    state: SandboxState = request.app.state.sandbox
    return state
