"""The demo: `scripts/demo` (`python -m tooling.demo`) authorizes an instance on a local stack."""
