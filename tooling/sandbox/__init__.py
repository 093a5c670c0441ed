"""A local stand-in for SAP Open Connectors and the Keap (Infusionsoft) OAuth provider.

For the demo, the tests and benchmarks: `create_app(SandboxConfig())` builds an ASGI
app with all state in memory; `python -m tooling.sandbox` runs it on a loopback port.
"""

from __future__ import annotations

from tooling.sandbox.app import create_app
from tooling.sandbox.clock import ManualClock
from tooling.sandbox.config import OAuthApp, SandboxConfig

__all__ = ["ManualClock", "OAuthApp", "SandboxConfig", "create_app"]
