"""Prefect blocks of the project; they register through the `prefect.collections` entry point."""

from blocks.credentials import OAuthAppCredentials, OpenConnectorsCredentials
from blocks.instance import ConnectorInstance
from blocks.state_key import DEFAULT_STATE_KEY_BLOCK, StateSigningKey

__all__ = [
    "DEFAULT_STATE_KEY_BLOCK",
    "ConnectorInstance",
    "OAuthAppCredentials",
    "OpenConnectorsCredentials",
    "StateSigningKey",
]
