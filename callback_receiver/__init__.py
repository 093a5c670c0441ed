"""The OAuth callback receiver: the provider's redirect resumes the waiting run by itself.

`callback_receiver.app.create_app` builds the ASGI app; `python -m callback_receiver`
serves it. Nothing is imported here, so that `callback_receiver.serving` (which the
sandbox reuses) stays free of Prefect.
"""
