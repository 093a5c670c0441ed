"""Tooling, never installed with the product: the sandbox, the local stack, the demo, benchmarks."""
