"""Settings of the callback receiver, from the command line or `OC_CALLBACK_*` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReceiverSettings(BaseSettings):
    """How the receiver listens and which Prefect server it resumes runs on.

    Every field can be set from the environment, e.g. `OC_CALLBACK_PORT=8765`.
    """

    model_config = SettingsConfigDict(env_prefix="OC_CALLBACK_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8765, ge=0, le=65535, description="Port; 0 picks a free one.")
    prefect_api_url: str | None = Field(
        default=None,
        description="The Prefect API, e.g. http://127.0.0.1:4200/api; default: Prefect's settings.",
    )
    prefect_ui_url: str | None = Field(
        default=None,
        description=(
            "The Prefect UI, for a link to the run on the result page; default: Prefect's "
            "PREFECT_UI_URL (derived from the API URL, Prefect Cloud included)."
        ),
    )
    state_key_block: str = Field(
        default="open-connectors-state-key",
        description="The StateSigningKey block that signs the states (created on first use).",
    )
    root_path: str = Field(
        default="",
        description="URL prefix when served behind a reverse proxy, e.g. /oauth-prefect.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-* headers are trusted (uvicorn's setting).",
    )
    wait_seconds: float = Field(
        default=20.0,
        gt=0,
        le=120,
        description="How long a callback may wait for its run to start waiting or to accept it.",
    )
    answer_within_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description=(
            "How long the person's page waits for a callback to be answered; past it, the page "
            "says to reload while the answer is still passed on (it is never cut short)."
        ),
    )
    max_concurrent_callbacks: int = Field(
        default=32, ge=1, le=1024, description="Callbacks handled at once; beyond: 429."
    )
    client_burst: int = Field(
        default=20, ge=1, le=1000, description="Requests one client address may make at once."
    )
    client_per_second: float = Field(
        default=1.0, gt=0, le=100, description="Requests a client address regains per second."
    )
    allow_remote: bool = Field(
        default=False, description="Allow listening on a non-loopback interface."
    )
