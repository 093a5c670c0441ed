"""The deployments as `prefect.yaml` defines them, for serving them from Python.

`prefect.yaml` is the one definition of the deployments (names, entrypoints,
parameters, schedules, triggers, concurrency). `prefect deploy` reads it for work
pools; `serve.py` reads it through this module, so both register the same
deployments. Work pool, build, push and pull sections do not apply to serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect.events import DeploymentTriggerTypes
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.schedules import Cron, Schedule
from pydantic import TypeAdapter

PREFECT_YAML = Path(__file__).with_name("prefect.yaml")
_TRIGGERS: TypeAdapter[DeploymentTriggerTypes] = TypeAdapter(DeploymentTriggerTypes)


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of `prefect.yaml`.

    Attributes:
        name: The deployment name.
        entrypoint: `module.path:flow_function`.
        description: Shown in the Prefect UI.
        tags: Deployment tags.
        parameters: Default parameters.
        schedules: Cron schedules (`cron`, `timezone`, `slug`, `active`, `parameters`).
        triggers: Event triggers, as in `prefect.yaml`.
        concurrency_limit: Runs at once at most, if limited.
    """

    name: str
    entrypoint: str
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    concurrency_limit: int | None = None

    def load_flow(self) -> Flow[..., Any]:
        """Import the flow named by the entrypoint."""
        return load_flow_from_entrypoint(self.entrypoint, use_placeholder_flow=False)

    def build_schedules(self) -> list[Schedule]:
        """The schedules as Prefect objects.

        Raises:
            ValueError: A schedule is not a cron schedule (the only kind used here).
        """
        built: list[Schedule] = []
        for item in self.schedules:
            if "cron" not in item:
                raise ValueError(f"Deployment {self.name}: only cron schedules are supported.")
            built.append(
                Cron(
                    item["cron"],
                    timezone=item.get("timezone"),
                    active=item.get("active", True),
                    parameters=item.get("parameters"),
                    slug=item.get("slug"),
                )
            )
        return built

    def build_triggers(self) -> list[DeploymentTriggerTypes]:
        """The triggers as Prefect objects, named as `prefect deploy` names them."""
        return [
            _TRIGGERS.validate_python({"name": f"{self.name}__automation_{index}", **item})
            for index, item in enumerate(self.triggers, start=1)
        ]


def load_specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Read the deployments of a `prefect.yaml`.

    Raises:
        ValueError: The file has no deployments, or one lacks a name or entrypoint.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    specs: list[DeploymentSpec] = []
    for item in document.get("deployments") or []:
        if not item.get("name") or not item.get("entrypoint"):
            raise ValueError(f"{path}: every deployment needs a name and an entrypoint.")
        specs.append(
            DeploymentSpec(
                name=item["name"],
                entrypoint=item["entrypoint"],
                description=item.get("description"),
                tags=list(item.get("tags") or []),
                parameters=dict(item.get("parameters") or {}),
                schedules=list(item.get("schedules") or []),
                triggers=list(item.get("triggers") or []),
                concurrency_limit=item.get("concurrency_limit"),
            )
        )
    if not specs:
        raise ValueError(f"{path} defines no deployments.")
    return specs
