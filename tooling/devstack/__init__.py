"""The local stack: Prefect server (SQLite or PostgreSQL), sandbox, receiver, serving, workers."""
