"""The OAuth callback receiver: the provider's redirect resumes the waiting run by itself."""

from callback_receiver.app import create_app
from callback_receiver.settings import ReceiverSettings

__all__ = ["ReceiverSettings", "create_app"]
