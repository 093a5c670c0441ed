"""`deployments/prefect.yaml` and the serve entry point define the same four deployments."""

from __future__ import annotations

import inspect

import yaml

from deployments.serve import build_deployments
from deployments.spec import PREFECT_YAML, load_specs
from flows.events import INSTANCE_CREATED

NAMES = {
    "authenticate-infusionsoft-erp": "authenticate-connector-instance",
    "reauthorize-connector-instance": "reauthorize-connector-instance",
    "verify-connector-instances": "verify-connector-instances",
    "export-connector-resource": "export-connector-resource",
}


def test_the_yaml_names_the_four_deployments_and_their_flows() -> None:
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
    assert document["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ project.stdout }}"}}
    ]
    assert document["build"][0]["prefect.deployments.steps.run_shell_script"]["id"] == "project"
    for deployment in document["deployments"]:
        assert deployment["work_pool"]["name"] == "open-connectors"


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
