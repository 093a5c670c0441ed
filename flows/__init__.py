"""Prefect flows and tasks of the project."""

from flows.authenticate import (
    AuthenticatedInstance,
    authenticate_connector_instance,
    await_authorization,
    create_instance,
    get_redirect_url,
)
from flows.authorization_input import AuthorizationResponse

__all__ = [
    "AuthenticatedInstance",
    "AuthorizationResponse",
    "authenticate_connector_instance",
    "await_authorization",
    "create_instance",
    "get_redirect_url",
]
