"""Hub records, generated lazily and deterministically, and the paging cursor.

A record depends only on (resource, index), so any page of any size can be built
without holding the others: 100,000 records per resource cost nothing until read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 5000

_EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
_GIVEN_NAMES = (
    "Ada", "Alan", "Barbara", "Claude", "Dorothy", "Edsger", "Frances", "Grace", "Hedy",
    "Ivan", "Joan", "Ken", "Katherine", "Linus", "Margaret", "Niklaus", "Olga", "Radia",
    "Shafi", "Tim", "Ursula", "Vint", "Whitfield", "Xiaoyuan", "Yukihiro", "Zhores",
)  # fmt: skip
_FAMILY_NAMES = (
    "Lovelace", "Turing", "Liskov", "Shannon", "Vaughan", "Dijkstra", "Allen", "Hopper",
    "Lamarr", "Sutherland", "Clarke", "Thompson", "Johnson", "Torvalds", "Hamilton",
    "Wirth", "Taussky", "Perlman", "Goldwasser", "Berners-Lee", "Franklin", "Cerf",
    "Diffie", "Tu", "Matsumoto", "Alferov",
)  # fmt: skip
_COMPANIES = (
    "Acme Corporation", "Globex", "Initech", "Umbrella Supplies", "Stark Industries",
    "Wayne Enterprises", "Hooli", "Vandelay Industries", "Soylent", "Wonka Industries",
    "Cyberdyne Systems", "Tyrell Corporation", "Gringotts", "Monarch Solutions",
)  # fmt: skip


def _digest(resource: str, index: int) -> int:
    raw = hashlib.blake2b(f"{resource}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big")


def _created(index: int) -> str:
    # Records get older-to-newer creation dates, 13 minutes apart.
    return (_EPOCH + timedelta(minutes=13 * index)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_record(resource: str, index: int) -> dict[str, Any]:
    """Build record number `index` (0-based) of `resource`; its `id` is `index + 1`.

    `contacts` look like Keap contacts; any other resource is a generic record.
    """
    record_id = index + 1
    if resource != "contacts":
        return {
            "id": record_id,
            "name": f"{resource.capitalize()} {record_id}",
            "resource": resource,
            "date_created": _created(index),
        }
    digest = _digest(resource, index)
    given = _GIVEN_NAMES[digest % len(_GIVEN_NAMES)]
    family = _FAMILY_NAMES[(digest >> 16) % len(_FAMILY_NAMES)]
    company = _COMPANIES[(digest >> 32) % len(_COMPANIES)]
    email = f"{given}.{family}.{record_id}@example.com".lower()
    return {
        "id": record_id,
        "given_name": given,
        "family_name": family,
        "email_addresses": [{"email": email, "field": "EMAIL1"}],
        "company": {"company_name": company},
        "date_created": _created(index),
    }


def records(resource: str, offset: int, count: int) -> list[dict[str, Any]]:
    """Build `count` consecutive records of `resource` from `offset` (0-based)."""
    return [make_record(resource, index) for index in range(offset, offset + count)]


def encode_cursor(resource: str, offset: int) -> str:
    """The opaque `elements-next-page-token`: base64url JSON naming resource and offset."""
    raw = json.dumps({"resource": resource, "offset": offset}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def decode_cursor(token: str, resource: str) -> int:
    """The offset a cursor points at.

    Raises:
        ValueError: The cursor is malformed, or belongs to another resource.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("malformed cursor") from exc
    offset = data.get("offset") if isinstance(data, dict) else None
    if (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or offset < 0
        or data.get("resource") != resource
    ):
        raise ValueError("malformed cursor")
    return offset
