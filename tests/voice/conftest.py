"""Rooms shared by the intent tests: ids, names, aliases as a household would write them."""

from __future__ import annotations

import pytest

from cassetted.config import RoomSettings

ROOMS: dict[str, RoomSettings] = {
    "living_room": RoomSettings(name="Living Room", aliases=["lounge"]),
    "kids_room": RoomSettings(name="Kids Room", child_safe=True),
    "kitchen": RoomSettings(name="Kitchen"),
    "office": RoomSettings(name="Office", aliases=["study"]),
    "master_bedroom": RoomSettings(name="Master Bedroom", aliases=["bedroom"]),
    "emma": RoomSettings(name="Emma's Room"),
    "bathroom": RoomSettings(name="Bathroom"),
    "guest_bedroom": RoomSettings(name="Guest Bedroom"),
}


@pytest.fixture
def rooms() -> dict[str, RoomSettings]:
    return ROOMS


from tests.lyrics.conftest import db, fake_server  # noqa: E402,F401  (the LLM fallback's tests)
