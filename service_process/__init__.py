"""Run an ASGI app as a local service process: bind, announce readiness, stop on cue.

Shared by the sandbox and the callback receiver. No Prefect inside.
"""

from service_process.runner import bind_socket, is_loopback, run

__all__ = ["bind_socket", "is_loopback", "run"]
