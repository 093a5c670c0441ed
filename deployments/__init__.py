"""Deployments of the project: `prefect.yaml` for work pools, `serve.py` for local serving."""
