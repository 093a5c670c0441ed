"""The connectors (elements) the sandbox knows: the Infusionsoft family, all OAuth 2.0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.errors import PlatformError


@dataclass(frozen=True)
class Element:
    """One connector of the platform.

    Attributes:
        id: The numeric id (ids vary between environments; these follow the docs).
        key: The element key, e.g. `infusionsofterp`.
        name: The display name.
        hub: The hub the element belongs to.
        requires_server: Whether instances need `infusionsoft.server` (the legacy elements).
    """

    id: int
    key: str
    name: str
    hub: str
    requires_server: bool

    def reference(self) -> dict[str, Any]:
        """The short form embedded in an instance."""
        return {"id": self.id, "key": self.key, "name": self.name, "hub": self.hub}

    def summary(self) -> dict[str, Any]:
        """The answer of `GET /elements/{keyOrId}`."""
        return {
            **self.reference(),
            "hookName": "Infusionsoft",
            "description": f"Sandbox stand-in for the {self.name} connector.",
            "active": True,
            "deleted": False,
            "typeOauth": False,
            "trialAccount": False,
            "beta": False,
            "extended": False,
            "private": False,
            "authentication": {"type": "oauth2"},
            "protocolType": "http",
            "parameters": [],
        }


ELEMENTS: tuple[Element, ...] = (
    Element(5001, "infusionsofterp", "Infusionsoft ERP", "erp", requires_server=True),
    Element(191, "infusionsoftcrm", "Infusionsoft CRM", "crm", requires_server=True),
    Element(
        192,
        "infusionsoftmarketing",
        "Infusionsoft Marketing Automation",
        "marketing",
        requires_server=True,
    ),
    Element(6158, "infusionsoftrest", "Infusionsoft REST", "crm", requires_server=False),
    Element(
        5002,
        "infusionsoftecommerce",
        "Infusionsoft Online Sales",
        "ecommerce",
        requires_server=True,
    ),
)

_BY_KEY = {element.key: element for element in ELEMENTS}
_BY_ID = {str(element.id): element for element in ELEMENTS}


def find_element(key_or_id: str) -> Element | None:
    """Return the element with this key or numeric id, or None."""
    return _BY_KEY.get(key_or_id) or _BY_ID.get(key_or_id)


def element_not_found(key_or_id: object) -> PlatformError:
    """The platform's 404 for an unknown element key or id."""
    # Cap what is echoed: the key comes straight from the caller.
    return PlatformError(404, f"No element found with key or id '{str(key_or_id)[:200]}'.")


def require_element(key_or_id: str) -> Element:
    """Return the element with this key or id.

    Raises:
        PlatformError: 404, no such element.
    """
    element = find_element(key_or_id)
    if element is None:
        raise element_not_found(key_or_id)
    return element
