"""Rooms that learn: requests and votes in a room shift its default genre and mood.

The rule, per room and per dimension (genre, mood): an observation first multiplies every
value's evidence by `decay`, then adds its weight to the observed value (a request that
names a genre: +1; a vote on a song made for the room: +/-`vote_weight`; evidence never goes
below 0). The room's preference is the value with the most evidence, once it has at least
`min_evidence`. Only what people chose counts: a genre the room filled in itself is never
observed, so a preference cannot feed on itself. Store-thread functions.
"""

from __future__ import annotations

import time

from cassetted.contract.schemas import LearnedPreference
from cassetted.household.settings import LearningSettings
from cassetted.store.database import RoomPreference

DIMENSIONS = ("genre", "mood")


def observe(learning: LearningSettings, room: str, dimension: str, value: str,
            weight: float) -> None:
    """One observation of `value` in `room` (see the module's rule)."""
    if not learning.enabled or dimension not in DIMENSIONS:
        return
    db = RoomPreference._meta.database
    with db.atomic():
        (RoomPreference.update(weight=RoomPreference.weight * learning.decay)
         .where((RoomPreference.room == room) & (RoomPreference.dimension == dimension))
         .execute())
        row, _ = RoomPreference.get_or_create(room=room, dimension=dimension, value=value)
        row.weight = max(0.0, row.weight + weight)
        row.updated_at = time.time()
        row.save()


def preference(learning: LearningSettings, room: str) -> LearnedPreference:
    """What the room has learned: its preferred genre and mood and the evidence for each."""
    evidence: dict[str, dict[str, float]] = {d: {} for d in DIMENSIONS}
    for row in RoomPreference.select().where(RoomPreference.room == room):
        if row.weight > 0.005:
            evidence[row.dimension][row.value] = round(row.weight, 3)
    chosen: dict[str, str | None] = {}
    for dimension, values in evidence.items():
        best = max(sorted(values), key=lambda v: values[v], default=None)
        enough = best is not None and values[best] >= learning.min_evidence
        chosen[dimension] = best if enough and learning.enabled else None
    return LearnedPreference(genre=chosen["genre"], mood=chosen["mood"],  # type: ignore[arg-type]
                             genres=evidence["genre"], moods=evidence["mood"])
