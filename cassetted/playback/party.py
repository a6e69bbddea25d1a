"""Party mode: several rooms' Snapcast groups listen to one stream, so Snapcast keeps them in sync.

Starting a party moves each room's group to the party stream (a pipe source fed by the
party MPD) after remembering the group's previous stream and every client's volume;
stopping restores them. What was remembered is also written to a small JSON file, so a
daemon restarted in the middle of a party can still put the house back as it was.

Groups are not stable in snapserver (moving a client re-creates them), so a group that has
vanished by the time the party stops is restored through the clients it held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cassetted.playback.errors import PlaybackFailed
from cassetted.playback.zones.snapcast import SnapcastClient, SnapcastError

log = logging.getLogger(__name__)


@dataclass
class SavedGroup:
    """A group as it was before the party: its stream and its clients' volumes."""

    group_id: str
    stream_id: str
    rooms: list[str]
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)  # client id -> volume


class PartyMode:
    """Moves groups to the party stream and back. One instance per snapserver."""

    def __init__(self, client: SnapcastClient, party_stream: str,
                 state_file: Path | None = None) -> None:
        self._client = client
        self.party_stream = party_stream
        self._state_file = state_file
        self._saved: dict[str, SavedGroup] = self._load()

    @property
    def active(self) -> bool:
        return bool(self._saved)

    @property
    def rooms(self) -> set[str]:
        return {room for saved in self._saved.values() for room in saved.rooms}

    # ------------------------------------------------------------------ persistence

    def _load(self) -> dict[str, SavedGroup]:
        if self._state_file is None or not self._state_file.exists():
            return {}
        try:
            data = json.loads(self._state_file.read_text())
            return {g["group_id"]: SavedGroup(**g) for g in data.get("groups", [])}
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("ignoring unreadable party state %s: %s", self._state_file, error)
            return {}

    def _save(self) -> None:
        if self._state_file is None:
            return
        if not self._saved:
            self._state_file.unlink(missing_ok=True)
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"groups": [asdict(g) for g in self._saved.values()]}))
        tmp.replace(self._state_file)

    # ------------------------------------------------------------------ start / stop

    def _require_connected(self) -> None:
        if not self._client.connected:
            raise PlaybackFailed(f"snapserver at {self._client.where} is unreachable")

    async def start(self, rooms: dict[str, str], *, strict: bool = True) -> dict[str, Any]:
        """Move the groups of `rooms` (room id -> snapcast_group) to the party stream.

        strict: every room must resolve to a group (an explicit list of rooms); otherwise
        rooms whose group is not found are skipped and reported (`"all"`).
        """
        self._require_connected()
        if self._client.stream(self.party_stream) is None:
            known = ", ".join(s.get("id", "?") for s in self._client.streams()) or "none"
            raise PlaybackFailed(
                f"snapserver has no stream {self.party_stream!r} (streams: {known})")
        found: dict[str, tuple[dict[str, Any], list[str]]] = {}
        skipped: list[dict[str, str]] = []
        for room_id, ref in rooms.items():
            group = self._client.find_group(ref)
            if group is None:
                reason = f"no snapserver group or client matches {ref!r}"
                if strict:
                    raise PlaybackFailed(f"room {room_id!r}: {reason}", "rooms")
                skipped.append({"room": room_id, "reason": reason})
                continue
            found.setdefault(group["id"], (group, []))[1].append(room_id)
        if not found:
            raise PlaybackFailed("none of the rooms is a connected Snapcast group", "rooms")

        for group_id, (group, group_rooms) in found.items():
            saved = self._saved.get(group_id)
            if saved is None:
                self._saved[group_id] = SavedGroup(
                    group_id=group_id, stream_id=str(group.get("stream_id")), rooms=group_rooms,
                    volumes={c["id"]: dict(c.get("config", {}).get("volume", {}))
                             for c in group.get("clients", [])})
            else:
                saved.rooms = sorted(set(saved.rooms) | set(group_rooms))
        self._save()  # before switching: a crash mid-way can still be undone
        for group_id in found:
            try:
                await self._client.set_group_stream(group_id, self.party_stream)
            except SnapcastError as error:
                raise PlaybackFailed(f"could not move group {group_id}: {error}") from None
        return {"rooms": sorted(self.rooms), "groups": sorted(found), "skipped": skipped}

    async def stop(self, rooms: list[str] | None = None) -> dict[str, Any]:
        """Restore the groups of `rooms` (all party groups when None)."""
        targets = [saved for saved in self._saved.values()
                   if rooms is None or set(saved.rooms) & set(rooms)]
        if not targets:
            return {"restored": [], "not_found": [], "rooms": sorted(self.rooms)}
        self._require_connected()
        restored: list[str] = []
        not_found: list[str] = []
        for saved in targets:
            group_ids = self._current_groups(saved)
            if not group_ids:
                not_found.append(saved.group_id)
            try:
                for group_id in group_ids:
                    await self._client.set_group_stream(group_id, saved.stream_id)
                for client_id, volume in saved.volumes.items():
                    if self._client.client(client_id) is None:
                        not_found.append(client_id)
                        continue
                    await self._client.set_client_volume(
                        client_id, int(volume.get("percent", 100)), bool(volume.get("muted")))
            except SnapcastError as error:
                # Keep what is left to restore; a later stop can finish the job.
                self._save()
                raise PlaybackFailed(f"could not restore group {saved.group_id}: {error}") from None
            restored.extend(saved.rooms)
            del self._saved[saved.group_id]
            self._save()
        return {"restored": sorted(restored), "not_found": not_found, "rooms": sorted(self.rooms)}

    def _current_groups(self, saved: SavedGroup) -> list[str]:
        """The group itself, or else the groups that now hold its clients."""
        if self._client.group(saved.group_id) is not None:
            return [saved.group_id]
        return [group["id"] for group in self._client.groups()
                if any(c.get("id") in saved.volumes for c in group.get("clients", []))]
