"""The names of the project's deployments, defined once.

`deployments/prefect.yaml` spells them too (YAML cannot import);
`tests/unit/test_deployment_specs.py` checks that both agree.
"""

from __future__ import annotations

AUTHENTICATE_FLOW = "authenticate-connector-instance"
AUTHENTICATE_DEPLOYMENT = "authenticate-infusionsoft-erp"
REAUTHORIZE_FLOW = "reauthorize-connector-instance"
REAUTHORIZE_DEPLOYMENT = "reauthorize-connector-instance"
VERIFY_FLOW = "verify-connector-instances"
VERIFY_DEPLOYMENT = "verify-connector-instances"
EXPORT_FLOW = "export-connector-resource"
EXPORT_DEPLOYMENT = "export-connector-resource"
DISCONNECT_FLOW = "disconnect-connector-instance"
DISCONNECT_DEPLOYMENT = "disconnect-connector-instance"

#: Every deployment as `(flow name, deployment name)`.
DEPLOYMENTS: tuple[tuple[str, str], ...] = (
    (AUTHENTICATE_FLOW, AUTHENTICATE_DEPLOYMENT),
    (REAUTHORIZE_FLOW, REAUTHORIZE_DEPLOYMENT),
    (VERIFY_FLOW, VERIFY_DEPLOYMENT),
    (EXPORT_FLOW, EXPORT_DEPLOYMENT),
    (DISCONNECT_FLOW, DISCONNECT_DEPLOYMENT),
)


def full_name(flow_name: str, deployment_name: str) -> str:
    """A deployment's full name, `flow/deployment`, as `run_deployment` takes it."""
    return f"{flow_name}/{deployment_name}"
