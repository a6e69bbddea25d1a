"""Errors of the playback package that go out in MQTT replies (see cassetted.errors)."""

from __future__ import annotations

from cassetted.errors import CassettedError


class PlaybackFailed(CassettedError):
    """A player (MPD, snapserver, the sound card) refused or could not be reached."""

    code = "playback_failed"
