"""Prefect blocks of the project; register them with `prefect block register -m blocks`."""

from blocks.credentials import OAuthAppCredentials, OpenConnectorsCredentials
from blocks.instance import ConnectorInstance

__all__ = ["ConnectorInstance", "OAuthAppCredentials", "OpenConnectorsCredentials"]
