"""Whether a saved instance answers, and what changed since the previous check.

A check pings the instance through its hub with the saved token. When the token is
refused, the instance is read with the account's secrets to tell a deleted instance
from one whose provider grant was revoked. A platform that cannot be reached says
nothing about the instance: that check is "unknown" and changes nothing.

Each instance's last known status is kept in a Prefect Variable
(`open-connectors-health-<block name>`): it lives on the Prefect server, so every
worker and machine sees the same history, it is visible and editable in the UI, and
it holds no secret. Events are emitted on changes only (ok → broken, broken → ok),
so a daily check does not repeat an alarm every day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from prefect.variables import Variable
from pydantic import BaseModel, ConfigDict, ValidationError

from blocks import ConnectorInstance
from flows.steps.names import AUTHENTICATE_DEPLOYMENT, REAUTHORIZE_DEPLOYMENT
from open_connectors import (
    InstanceAuthenticationError,
    InstanceDisabledError,
    InstanceNotFoundError,
    OpenConnectorsError,
    PlatformUnavailableError,
    ProviderForbiddenError,
)

Status = Literal["ok", "broken", "unknown"]
Problem = Literal["deleted", "disabled", "forbidden", "revoked", "rejected", "failing"]
Change = Literal["broken", "recovered"]

VARIABLE_PREFIX = "open-connectors-health-"
# Problems a new consent can fix while keeping the instance's id.
REAUTHORIZABLE: frozenset[str] = frozenset({"revoked", "rejected"})
_ADVICE: dict[str, str] = {
    "deleted": f"Authorize a new instance ({AUTHENTICATE_DEPLOYMENT}).",
    "disabled": "Enable the instance in Open Connectors.",
    "forbidden": "Check the account's permissions at the provider (it refused the resource).",
    "revoked": f"Re-authorize it ({REAUTHORIZE_DEPLOYMENT}).",
    "rejected": f"Re-authorize it ({REAUTHORIZE_DEPLOYMENT}).",
    "failing": "See the detail; check the instance in Open Connectors.",
}


class InstanceCheck(BaseModel):
    """The outcome of one check. No token inside.

    Attributes:
        block_name: The `ConnectorInstance` block.
        instance_id: The instance id (None when the block cannot be read).
        instance_name: The instance name.
        element_key: The connector key.
        status: `ok`, `broken`, or `unknown` (the platform could not be asked).
        problem: Why it is broken: deleted, disabled, forbidden, revoked, rejected or failing.
        detail: A sentence for the person (built by this project: no secret inside).
    """

    model_config = ConfigDict(frozen=True)

    block_name: str
    instance_id: int | None = None
    instance_name: str = ""
    element_key: str = ""
    status: Status
    problem: Problem | None = None
    detail: str = ""

    @property
    def advice(self) -> str:
        """What to do about a broken instance."""
        return _ADVICE.get(self.problem or "", "")


class HealthRecord(BaseModel):
    """The last known status of one saved instance, kept between checks.

    Attributes:
        instance_id: The instance the status is about (a block may be re-pointed).
        status: `ok` or `broken`.
        problem: Why it is broken.
        since: When the status began.
        checked_at: When it was last confirmed.
        reauthorization_flow_run: The re-authorization run started for this breakage.
    """

    instance_id: int
    status: Literal["ok", "broken"]
    problem: Problem | None = None
    since: datetime
    checked_at: datetime
    reauthorization_flow_run: str | None = None


async def check_saved_instance(saved: ConnectorInstance, block_name: str) -> InstanceCheck:
    """Ping the instance; when it does not answer, find out why.

    Args:
        saved: The loaded block.
        block_name: Its name.
    """
    try:
        async with saved.get_client() as client:
            await client.ping(saved.hub)
    except PlatformUnavailableError as exc:
        return _outcome(saved, block_name, "unknown", None, str(exc))
    except InstanceDisabledError:
        return _outcome(
            saved,
            block_name,
            "broken",
            "disabled",
            f"Instance {saved.instance_id} is disabled in Open Connectors.",
        )
    except ProviderForbiddenError as exc:
        return _outcome(saved, block_name, "broken", "forbidden", str(exc))
    except InstanceAuthenticationError:
        problem, detail = await _why_refused(saved)
        return _outcome(saved, block_name, "broken", problem, detail)
    except OpenConnectorsError as exc:
        return _outcome(saved, block_name, "broken", "failing", str(exc))
    return _outcome(saved, block_name, "ok", None, "Answers its ping.")


async def _why_refused(saved: ConnectorInstance) -> tuple[Problem, str]:
    """The token was refused: deleted, revoked, or a stale token in the block?"""
    try:
        async with saved.credentials.get_client() as client:
            instance = await client.get_instance(saved.instance_id)
    except InstanceNotFoundError:
        return "deleted", f"Instance {saved.instance_id} was deleted in Open Connectors."
    except OpenConnectorsError as exc:
        return "rejected", f"The token was refused, and the instance could not be read: {exc}"
    if not instance.valid:
        return "revoked", (
            f"Open Connectors marks instance {saved.instance_id} invalid: the provider refused "
            "its credentials (revoked or expired grant)."
        )
    return "rejected", f"The token saved in the block was refused for instance {saved.instance_id}."


def _outcome(
    saved: ConnectorInstance,
    block_name: str,
    status: Status,
    problem: Problem | None,
    detail: str,
) -> InstanceCheck:
    return InstanceCheck(
        block_name=block_name,
        instance_id=saved.instance_id,
        instance_name=saved.instance_name,
        element_key=saved.element_key,
        status=status,
        problem=problem,
        detail=detail,
    )


def next_record(
    previous: HealthRecord | None, check: InstanceCheck, now: datetime
) -> tuple[HealthRecord | None, Change | None]:
    """The record to keep after `check`, and the change to announce, if any.

    An unknown outcome keeps the previous record. A record about another instance
    (the block was re-pointed) counts as no record. Only ok → broken and
    broken → ok are changes; the first check of a broken instance is one too,
    the first check of a healthy one is not.
    """
    if check.status == "unknown" or check.instance_id is None:
        return previous, None
    if previous is not None and previous.instance_id != check.instance_id:
        previous = None
    if check.status == "broken":
        if previous is not None and previous.status == "broken":
            return previous.model_copy(update={"problem": check.problem, "checked_at": now}), None
        record = HealthRecord(
            instance_id=check.instance_id,
            status="broken",
            problem=check.problem,
            since=now,
            checked_at=now,
        )
        return record, "broken"
    if previous is not None and previous.status == "ok":
        return previous.model_copy(update={"checked_at": now}), None
    record = HealthRecord(instance_id=check.instance_id, status="ok", since=now, checked_at=now)
    return record, "recovered" if previous is not None else None


def variable_name(block_name: str) -> str:
    """The Prefect Variable holding a block's health record."""
    return f"{VARIABLE_PREFIX}{block_name}"


async def read_record(block_name: str) -> HealthRecord | None:
    """The kept record of a block, or None (never checked, or unreadable)."""
    value = await Variable.aget(variable_name(block_name), default=None)
    if not isinstance(value, dict):
        return None
    try:
        return HealthRecord.model_validate(value)
    except ValidationError:
        return None  # edited by hand into something else: start afresh


async def write_record(block_name: str, record: HealthRecord) -> None:
    """Keep a block's health record on the Prefect server."""
    await Variable.aset(
        variable_name(block_name),
        record.model_dump(mode="json"),
        tags=["open-connectors", "health"],
        overwrite=True,
    )


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)
