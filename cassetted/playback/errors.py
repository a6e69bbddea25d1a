"""Errors of the playback package that go out in MQTT replies (see cassetted.contract.errors)."""

from __future__ import annotations

from cassetted.contract.errors import CassettedError


class PlaybackFailed(CassettedError):
    """A player (MPD, snapserver, the sound card) refused or could not be reached."""

    code = "playback_failed"
