"""Links to the Prefect UI, built by Prefect's own URL helper (Prefect Cloud's shape included)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.context import SettingsContext, get_settings_context
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from prefect.utilities.urls import url_for


class RunLinks:
    """Builds the UI address of a flow run with `prefect.utilities.urls.url_for`.

    The base is the given UI URL, else Prefect's `PREFECT_UI_URL` setting, which
    Prefect derives from the API URL (for Prefect Cloud: the account and workspace
    path). The settings are resolved once; each link only formats.

    Args:
        ui_url: The Prefect UI's address, when it is configured explicitly.
        api_url: The Prefect API the runs live on (the UI is derived from it).
    """

    def __init__(self, *, ui_url: str | None = None, api_url: str | None = None) -> None:
        context = get_settings_context()
        updates: dict[Any, str] = {}
        if api_url:
            updates[PREFECT_API_URL] = api_url
        if ui_url:
            updates[PREFECT_UI_URL] = ui_url
        self._profile = context.profile
        self._settings = context.settings.copy_with_update(updates=updates) if updates else None

    def flow_run(self, flow_run_id: UUID | str) -> str | None:
        """The UI page of a flow run, or None when no UI address is known."""
        if self._settings is None:
            return url_for("flow-run", obj_id=str(flow_run_id)) or None
        # A context per call (cheap): a context object must not be entered twice at once.
        with SettingsContext(profile=self._profile, settings=self._settings):
            return url_for("flow-run", obj_id=str(flow_run_id)) or None
