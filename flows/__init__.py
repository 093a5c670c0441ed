"""The project's Prefect flows (one module each); their shared steps live in `flows.steps`."""

from flows.authenticate import (
    AuthenticatedInstance,
    authenticate_connector_instance,
    await_authorization,
    create_instance,
    get_redirect_url,
)
from flows.disconnect import DisconnectedInstance, disconnect_connector_instance
from flows.export import ExportSummary, export_connector_resource
from flows.reauthorize import ReauthorizedInstance, reauthorize_connector_instance
from flows.steps.consent import AuthorizationAnswer
from flows.verify import InstanceHealth, verify_connector_instances

__all__ = [
    "AuthenticatedInstance",
    "AuthorizationAnswer",
    "DisconnectedInstance",
    "ExportSummary",
    "InstanceHealth",
    "ReauthorizedInstance",
    "authenticate_connector_instance",
    "await_authorization",
    "create_instance",
    "disconnect_connector_instance",
    "export_connector_resource",
    "get_redirect_url",
    "reauthorize_connector_instance",
    "verify_connector_instances",
]
