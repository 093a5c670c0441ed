"""Each block class's JSON schema, built once per process instead of on every dump and save.

Prefect's `Block` builds the class's pydantic JSON schema again whenever it needs to
know which fields are secret: for every field of every `model_dump`, and several times
per `save` (about 40 schema builds, 0.1 to 0.15 s of CPU, to save one `ConnectorInstance`
with its nested credentials). A class's schema cannot change once the class exists,
so building it once is the same answer. Each caller gets its own copy (parsed from
the JSON kept, faster than a deep copy), since callers may change what they get.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class CachedSchema:
    """Mix in before `Block` (`class X(CachedSchema, Block)`): its JSON schema is built once.

    Not a block itself, so it is never registered as a block type.
    """

    _schemas: ClassVar[dict[tuple[Any, ...], str]] = {}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The class's JSON schema, as `Block.model_json_schema` gives it (built once)."""
        key = (cls, args, tuple(sorted(kwargs.items())))
        schema = CachedSchema._schemas.get(key)
        if schema is None:
            schema = json.dumps(super().model_json_schema(*args, **kwargs))  # type: ignore[misc]
            CachedSchema._schemas[key] = schema
        return json.loads(schema)
