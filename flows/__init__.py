"""Prefect flows and tasks of the project."""

from flows.authenticate import (
    AuthenticatedInstance,
    authenticate_connector_instance,
    await_authorization,
    create_instance,
    get_redirect_url,
)
from flows.authorization_input import AuthorizationResponse
from flows.export import ExportSummary, export_connector_resource
from flows.reauthorize import ReauthorizedInstance, reauthorize_connector_instance
from flows.verify import InstanceHealth, verify_connector_instances

__all__ = [
    "AuthenticatedInstance",
    "AuthorizationResponse",
    "ExportSummary",
    "InstanceHealth",
    "ReauthorizedInstance",
    "authenticate_connector_instance",
    "await_authorization",
    "create_instance",
    "export_connector_resource",
    "get_redirect_url",
    "reauthorize_connector_instance",
    "verify_connector_instances",
]
