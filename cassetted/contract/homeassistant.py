"""The payloads of the Home Assistant topics under `<base>/ha/`. Home Assistant reads them
through our discovery templates, but automations read them too, so they are part of the
published contract and the AsyncAPI document describes them like every other payload."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class GenerationState(BaseModel):
    """`<base>/ha/generation` (retained): the newest active job, else the last one to end."""

    state: str = Field(description="idle, or a job state (queued, composing, done, ...)")
    progress_pct: int = Field(ge=0, le=100)
    job_id: str | None = None
    request_id: str | None = None
    song_id: str | None = None
    eta_s: float | None = None
    error: str | None = None
    active_jobs: int = Field(0, ge=0)


class PanelState(BaseModel):
    """`<base>/ha/panel/state` (retained): the panel's values as HA shows them."""

    prompt: str = Field(max_length=255)
    genre: str = Field(description='"auto" or a genre')
    mood: str = Field(description='"auto" or a mood')
    room: str = Field(description='"none" or a room name')
    lyrics_provider: str = Field(description='"default" (the configured chain) or a provider')
    duration: float = Field(ge=10, le=600, description="seconds")
    bpm: int = Field(ge=0, le=300, description="0 = auto (the daemon chooses)")
    party: Literal["ON", "OFF"]
    child_safe: Literal["ON", "OFF"]
