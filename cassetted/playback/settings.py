"""Configuration that playback adds to `config.py` (mounted there; kept here to stay in one place).

`[snapcast]` gains the MPD that feeds the party stream and the id of that stream:

```toml
[snapcast]
host = "127.0.0.1"
port = 1705
party_stream = "party"          # snapserver stream id of the pipe source the party MPD writes to

[snapcast.mpd]                  # the MPD whose fifo output feeds that pipe
host = "127.0.0.1"
port = 6601
music_dir = "/var/lib/mpd-party/music"
```

This module imports nothing from `cassetted.config`, so config.py can import it freely.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class MpdEndpoint(BaseModel):
    """An MPD server: a room's `[rooms.<id>.mpd]` and the party's `[snapcast.mpd]` (the one
    definition of an MPD endpoint; config.MpdSettings is this class)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Host name, IP, or the path of MPD's local socket")
    port: int = Field(6600, ge=1, le=65535)
    password: SecretStr | None = None
    music_dir: Path | None = Field(
        None, description="MPD's music_directory as this machine sees it; songs are placed in "
                          "its cassetted/ folder. Empty: only over a local socket (file:// URIs)")


class SnapcastPlaybackSettings(BaseModel):
    """`[snapcast]`: the snapserver that synchronises rooms, and the party pipeline."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1705, ge=1, le=65535)
    party_stream: str = Field(
        "party", min_length=1, max_length=128,
        description="Id of the snapserver stream (a pipe source) that the party MPD feeds")
    mpd: MpdEndpoint | None = Field(
        None, description="The MPD writing to the party stream's pipe (fifo output)")
    reconnect_max_s: float = Field(10.0, gt=0, description="Longest wait between reconnects")
