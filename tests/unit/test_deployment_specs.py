"""`deployments/prefect.yaml` and the serve entry point define the same deployments."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from prefect.utilities.importtools import import_object
from prefect.utilities.templating import apply_values

from deployments.serve import build_deployments
from deployments.spec import PREFECT_YAML, load_specs
from flows.steps.events import INSTANCE_CREATED
from tooling.devstack.stack import SERVED_DEPLOYMENTS

PROJECT_ROOT = Path(__file__).resolve().parents[2]

NAMES = {
    "authenticate-infusionsoft-erp": "authenticate-connector-instance",
    "reauthorize-connector-instance": "reauthorize-connector-instance",
    "verify-connector-instances": "verify-connector-instances",
    "export-connector-resource": "export-connector-resource",
    "disconnect-connector-instance": "disconnect-connector-instance",
}


def test_the_yaml_names_the_deployments_and_their_flows() -> None:
    specs = load_specs()
    assert {spec.name: spec.load_flow().name for spec in specs} == NAMES


def test_default_parameters_are_parameters_of_the_flows() -> None:
    for spec in load_specs():
        accepted = set(inspect.signature(spec.load_flow().fn).parameters)
        assert set(spec.parameters) <= accepted, spec.name
        for trigger in spec.triggers:
            assert set(trigger.get("parameters", {})) <= accepted, spec.name


def test_workers_can_run_them_from_a_process_pool() -> None:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    for deployment in document["deployments"]:
        assert deployment["work_pool"]["name"] == "open-connectors"


def test_the_pull_step_moves_a_worker_into_the_project() -> None:
    # The build step as `prefect deploy` runs it: imported by its dotted name into Prefect's
    # own interpreter (no shell, no `python` from PATH), its output filled into the pull step.
    document = yaml.safe_load(PREFECT_YAML.read_text())
    ((name, inputs),) = document["build"][0].items()
    step_id = inputs.pop("id")
    outputs = {step_id: import_object(name)(**inputs)}
    assert apply_values(document["pull"], outputs) == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}
    ]


def test_the_health_check_runs_daily_one_at_a_time() -> None:
    (verify,) = [spec for spec in load_specs() if spec.name == "verify-connector-instances"]
    (schedule,) = verify.build_schedules()
    assert (schedule.cron, schedule.timezone, schedule.active) == ("0 6 * * *", "UTC", True)
    assert verify.concurrency_limit == 1


def test_a_new_instance_starts_the_export_with_its_block_name() -> None:
    (export,) = [spec for spec in load_specs() if spec.name == "export-connector-resource"]
    (trigger,) = export.build_triggers()
    assert trigger.expect == {INSTANCE_CREATED}
    assert trigger.match.root == {"prefect.resource.id": "open-connectors.instance.*"}
    assert trigger.parameters == {"instance_block": "{{ event.payload.block_name }}"}


def test_serving_builds_what_the_yaml_defines() -> None:
    served = {deployment.name: deployment for deployment in build_deployments()}
    for spec in load_specs():
        deployment = served[spec.name]
        assert deployment.flow_name == NAMES[spec.name]
        assert deployment.parameters == spec.parameters
        assert deployment.description == spec.description
        assert [s.schedule.cron for s in deployment.schedules or []] == [  # type: ignore[union-attr]
            item["cron"] for item in spec.schedules
        ]
        assert [t.expect for t in deployment.triggers] == [
            set(item["expect"]) for item in spec.triggers
        ]


def test_the_disconnect_is_run_by_hand_and_served_locally() -> None:
    (disconnect,) = [spec for spec in load_specs() if spec.name == "disconnect-connector-instance"]
    assert disconnect.schedules == [] and disconnect.triggers == []
    assert disconnect.parameters == {}  # instance_block is asked for each run
    assert "disconnect" in disconnect.tags and disconnect.description
    assert ("disconnect-connector-instance", "disconnect-connector-instance") in SERVED_DEPLOYMENTS
    assert {name for _, name in SERVED_DEPLOYMENTS} == {spec.name for spec in load_specs()}
