"""The event contract: event types and the typed event parsed from Kafka bytes."""
from __future__ import annotations

#: Event types in code order: ``EVENT_TYPES[code]`` is the name, columns store the code.
EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "buy")
EVENT_TYPE_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}
