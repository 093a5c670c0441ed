"""The connectors (elements) the sandbox knows, with the definitions the platform serves.

`GET /elements/{keyOrId}` answers each one's definition: hub, authentication and the
`configuration` array (`key`, `name`, `required`, `defaultValue`, `type`,
`hideFromConsole`, `displayOrder`, …), shaped like the platform's (the field shape of
element JSON in public Cloud Elements clients). Instance creation checks the required
fields generically, as the platform does.

Sources of each connector's fields are named beside it; ids follow the docs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tooling.sandbox.errors import PlatformError

SERVER_PATTERN = re.compile(r"(https://)?[a-z0-9][a-z0-9-]*\.infusionsoft\.com/?")
OAUTH2 = "oauth2"


@dataclass(frozen=True)
class ConfigField:
    """One field of a connector's `configuration` array.

    Attributes:
        key: The configuration key.
        name: The console's name of the field.
        type: The field type (`TEXTFIELD_32`, `PASSWORD`, `BOOLEAN`, `SELECTION`, …).
        required: Whether an instance needs it.
        default: The default value, if any.
        hidden: `hideFromConsole`: internal fields the platform sets itself.
        description: The platform's description.
        pattern: For the sandbox's own value check: a value must match it in full.
    """

    key: str
    name: str
    type: str = "TEXTFIELD_128"
    required: bool = False
    default: str | None = None
    hidden: bool = False
    description: str = ""
    pattern: re.Pattern[str] | None = None

    def to_json(self, order: int) -> dict[str, Any]:
        """The field as the platform answers it."""
        return {
            "name": self.name,
            "key": self.key,
            "description": self.description or self.name,
            "defaultValue": self.default,
            "resellerConfig": False,
            "companyConfig": False,
            "active": True,
            "internal": False,
            "groupControl": False,
            "displayOrder": order,
            "type": self.type,
            "hideFromConsole": self.hidden,
            "required": self.required,
        }


def _oauth_fields() -> tuple[ConfigField, ...]:
    # The three keys every OAuth 2.0 create body documents, plus the hidden ones the
    # platform fills during the code exchange (no default: never set by callers).
    return (
        ConfigField("oauth.api.key", "OAuth API Key", "TEXTFIELD_128", required=True),
        ConfigField("oauth.api.secret", "OAuth API Secret", "PASSWORD", required=True),
        ConfigField("oauth.callback.url", "OAuth Callback URL", "TEXTFIELD_1000", required=True),
        ConfigField("oauth.user.token", "OAuth User Token", "TEXTFIELD_1000", hidden=True),
        ConfigField(
            "oauth.user.refresh_token", "OAuth User Refresh Token", "TEXTFIELD_1000", hidden=True
        ),
    )


def _common_fields() -> tuple[ConfigField, ...]:
    # devportal `_includes/common-instance-config.md`: events and null filtering.
    return (
        ConfigField(
            "event.notification.enabled", "Events Enabled", "BOOLEAN", default="false"
        ),
        ConfigField(
            "event.notification.callback.url", "Event Notification Callback URL", "TEXTFIELD_1000"
        ),
        ConfigField(
            "event.vendor.type", "Event Type", "SELECTION", default="polling", hidden=True
        ),
        ConfigField(
            "event.poller.refresh_interval", "Event poller refresh interval (mins)",
            "TEXTFIELD_32", default="15",
        ),
        ConfigField(
            "filter.response.nulls", "Filter null values from the response", "BOOLEAN",
            default="true",
        ),
    )  # fmt: skip


def _infusionsoft_fields(*, server: bool) -> tuple[ConfigField, ...]:
    # devportal `_includes/Elements/infusionsoft/authenticate.md` (server, encrypted key).
    fields = [
        ConfigField(
            "infusionsoft.private.key", "Encrypted Key", "PASSWORD",
            description="The encrypted key of the Infusionsoft account.",
        )
    ]  # fmt: skip
    if server:
        fields.insert(
            0,
            ConfigField(
                "infusionsoft.server",
                "Server Name",
                required=True,
                description="The Infusionsoft account host, e.g. xx123.infusionsoft.com.",
                pattern=SERVER_PATTERN,
            ),
        )
    return tuple(fields)


@dataclass(frozen=True)
class Element:
    """One connector of the platform.

    Attributes:
        id: The numeric id (ids vary between environments; these follow the docs).
        key: The element key, e.g. `infusionsofterp`.
        name: The display name.
        hub: The hub the element belongs to.
        fields: The connector's own configuration fields (beside the OAuth and common ones).
        authentication: `authentication.type`: `oauth2`, or e.g. `basic`.
        hook_name: The platform's `hookName`.
        type_oauth: The platform's `typeOauth` flag, as the docs' examples show it.
    """

    id: int
    key: str
    name: str
    hub: str
    fields: tuple[ConfigField, ...] = ()
    authentication: str = OAUTH2
    hook_name: str = "Infusionsoft"
    type_oauth: bool = False

    @property
    def is_oauth2(self) -> bool:
        """Whether instances are created with an OAuth 2.0 authorization code."""
        return self.authentication == OAUTH2

    @property
    def configuration(self) -> tuple[ConfigField, ...]:
        """Every configuration field, in display order."""
        oauth = _oauth_fields() if self.is_oauth2 else ()
        return oauth + self.fields + _common_fields()

    @property
    def required_fields(self) -> list[ConfigField]:
        """The fields a create body must carry."""
        return [item for item in self.configuration if item.required]

    def reference(self) -> dict[str, Any]:
        """The short form embedded in an instance."""
        return {"id": self.id, "key": self.key, "name": self.name, "hub": self.hub}

    def summary(self) -> dict[str, Any]:
        """The answer of `GET /elements/{keyOrId}`: the definition, configuration included."""
        return {
            **self.reference(),
            "hookName": self.hook_name,
            "description": f"Sandbox stand-in for the {self.name} connector.",
            "active": True,
            "deleted": False,
            "typeOauth": self.type_oauth,
            "trialAccount": False,
            "beta": False,
            "extended": False,
            "private": False,
            "authentication": {"type": self.authentication},
            "protocolType": "http",
            "parameters": [],
            "configuration": [
                item.to_json(order) for order, item in enumerate(self.configuration, start=1)
            ],
        }


ELEMENTS: tuple[Element, ...] = (
    Element(5001, "infusionsofterp", "Infusionsoft ERP", "erp", _infusionsoft_fields(server=True)),
    Element(191, "infusionsoftcrm", "Infusionsoft CRM", "crm", _infusionsoft_fields(server=True)),
    Element(
        192,
        "infusionsoftmarketing",
        "Infusionsoft Marketing Automation",
        "marketing",
        _infusionsoft_fields(server=True),
    ),
    # devportal docs/elements/infusionsoft-rest/includes/config-fields.md: oauth.* only.
    Element(6158, "infusionsoftrest", "Infusionsoft REST", "crm"),
    # devportal docs/elements/infusionsoft-ecommerce/infusionsoft-ecommerce-create-instance.md:
    # the oauth.* keys and document.tagging, no server.
    Element(
        5002,
        "infusionsoftecommerce",
        "Infusionsoft Online Sales",
        "ecommerce",
        (ConfigField("document.tagging", "Document Tagging", "BOOLEAN", default="false"),),
    ),
    # devportal docs/elements/hubspot-crm/hubspot-crm-create-instance.md and authenticate.md
    # (key hubspotcrm, hub crm): the oauth.* keys; create.bulk.properties from its quick
    # provision body.
    Element(
        168,
        "hubspotcrm",
        "HubSpot CRM",
        "crm",
        (
            ConfigField(
                "create.bulk.properties", "Create bulk properties", "BOOLEAN", default="false"
            ),
        ),
        hook_name="HubSpotCRM",
        type_oauth=True,
    ),
    # devportal docs/elements/zendesk/authenticate.md (key zendesk, id 41): the oauth.* keys
    # and the required zendesk.subdomain.
    Element(
        41,
        "zendesk",
        "Zendesk",
        "helpdesk",
        (
            ConfigField(
                "zendesk.subdomain",
                "Subdomain",
                "TEXTFIELD_64",
                required=True,
                description="Your unique Zendesk subdomain: https://{subdomain}.zendesk.com.",
                pattern=re.compile(r"[a-z0-9][a-z0-9-]{0,62}"),
            ),
        ),
        hook_name="Zendesk",
        type_oauth=True,
    ),
    # devportal docs/elements/quickbooksonline/authenticate.md, "Authenticate with OAuth 2.0"
    # (key quickbooks, id 39, hub finance): minor version and the sandbox switch.
    Element(
        39,
        "quickbooks",
        "QuickBooks Online",
        "finance",
        (
            ConfigField("quickbooks.minorversion", "Minor version", "TEXTFIELD_32"),
            ConfigField("use_sandbox", "Use a sandbox company", "BOOLEAN", default="false"),
        ),
        hook_name="QuickBooksOnline",
        type_oauth=True,
    ),
    # devportal docs/elements/closeio/closeio-create-instance.md: basic authentication with
    # the API key as user name; not OAuth 2.0 (the flow must refuse it).
    Element(
        146,
        "closeio",
        "Close.io",
        "crm",
        (
            ConfigField("username", "API Key", "TEXTFIELD_128", required=True),
            ConfigField("password", "Password", "PASSWORD", required=True),
            ConfigField(
                "base.url",
                "Base URL",
                "TEXTFIELD_1000",
                default="https://app.close.io/api/v1",
                hidden=True,
            ),
        ),
        authentication="basic",
        hook_name="CloseIO",
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
