"""States the project used to issue (v1, signed with the OAuth client secret): now refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

_V1_LABEL = b"open-connectors-authorization-state:v1:"


def client_secret_state(run_id: UUID, secret: str) -> str:
    """The v1 state `<run id>.<HMAC under the client secret>`: no longer accepted anywhere."""
    mac = hmac.new(secret.encode(), _V1_LABEL + run_id.hex.encode(), hashlib.sha256).digest()
    return f"{run_id.hex}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
