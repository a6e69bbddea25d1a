"""Local zone: the appliance's own speaker, through sounddevice (PortAudio).

sounddevice is the optional extra `local` and is imported only when a local room starts;
without it (or without PortAudio) the zone reports "unavailable" with a message that says
what to install, and commands fail with that message.

The zone is a small player: a queue of tracks, one output stream per track (each file has
its own rate and channels), software volume. The PortAudio callback reads the file; the
end of a track is handed back to the event loop, which moves to the next one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np
import soundfile as sf

from cassetted.playback.base import StateCallback, Track, ZoneError, ZoneStatus

INSTALL_HINT = "local output needs the 'local' extra: pip install 'cassetted[local]' (and PortAudio)"


class OutputStream(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


# (sample rate, channels, callback(outdata, frames, time, status)) -> a stream, not started
StreamFactory = Callable[[int, int, Callable[..., None]], OutputStream]


def sounddevice_factory(device: str | int | None = None) -> StreamFactory:
    """The real output; raises ImportError/OSError when sounddevice or PortAudio is missing."""
    import sounddevice

    def make(rate: int, channels: int, callback: Callable[..., None]) -> OutputStream:
        return cast("OutputStream", sounddevice.OutputStream(
            samplerate=rate, channels=channels, dtype="float32", callback=callback, device=device))

    return make


class LocalZone:
    """Implements Zone on the machine's own sound card."""

    def __init__(self, room_id: str, *, device: str | int | None = None,
                 stream_factory: StreamFactory | None = None) -> None:
        self.room_id = room_id
        self._device = device
        self._factory = stream_factory
        self._on_state: StateCallback | None = None
        self._status = ZoneStatus("unavailable", extra={"reason": "not started"})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # the file is read by PortAudio's thread
        self._queue: list[Track] = []
        self._index = -1
        self._file: sf.SoundFile | None = None
        self._stream: OutputStream | None = None
        self._state = "idle"
        self._volume = 100
        self._generation = 0  # ignores end-of-track signals from a stream already replaced

    @property
    def status(self) -> ZoneStatus:
        return self._status

    async def start(self, on_state: StateCallback) -> None:
        self._on_state = on_state
        self._loop = asyncio.get_running_loop()
        if self._factory is None:
            try:
                self._factory = sounddevice_factory(self._device)
            except (ImportError, OSError) as error:
                self._publish(ZoneStatus("unavailable", extra={"reason": f"{INSTALL_HINT}: {error}"}))
                return
        self._publish(self._current())

    async def stop(self) -> None:
        self._close()

    # ------------------------------------------------------------------ player

    def _require(self) -> None:
        if self._factory is None:
            raise ZoneError(str(self._status.extra.get("reason", INSTALL_HINT)))

    def _close(self) -> None:
        with self._lock:
            self._generation += 1
            stream, self._stream = self._stream, None
            file, self._file = self._file, None
        if stream is not None:
            stream.stop()
            stream.close()
        if file is not None:
            file.close()

    def _open(self, index: int, play: bool = True) -> None:
        """Make `index` the current track, ready at its start; play it when asked."""
        assert self._factory is not None
        self._close()
        track = self._queue[index]
        try:
            file = sf.SoundFile(str(track.path))
        except (OSError, RuntimeError) as error:  # soundfile raises LibsndfileError(RuntimeError)
            raise ZoneError(f"cannot open {track.path.name}: {error}") from None
        generation = self._generation
        try:
            stream = self._factory(file.samplerate, file.channels,
                                   lambda out, frames, _t, _s: self._fill(out, frames, generation))
        except Exception as error:  # noqa: BLE001 - PortAudio's errors are plain Exceptions
            file.close()
            raise ZoneError(f"cannot open the sound card: {error}") from None
        with self._lock:
            self._file, self._stream, self._index = file, stream, index
        self._state = "paused"
        if play:
            stream.start()
            self._state = "playing"

    def _fill(self, out: Any, frames: int, generation: int) -> None:
        """PortAudio callback (its own thread): the next block of the current file."""
        with self._lock:
            file = self._file if generation == self._generation else None
            data = file.read(frames, dtype="float32", always_2d=True) if file is not None else None
            gain = (self._volume / 100.0) ** 2  # perceptual-ish: 50 % is about -12 dB
        if data is None:
            out.fill(0)
            return
        out[: len(data)] = data * gain
        if len(data) < frames:
            out[len(data):] = 0
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._ended, generation)

    def _ended(self, generation: int) -> None:
        if generation != self._generation:
            return
        if self._index + 1 < len(self._queue):
            try:
                self._open(self._index + 1)
            except ZoneError:
                self._close()
                self._state = "idle"
        else:
            self._close()
            self._state = "idle"
        self._publish(self._current())

    def _current(self) -> ZoneStatus:
        song = self._queue[self._index].song_id if 0 <= self._index < len(self._queue) else None
        elapsed = None
        with self._lock:
            if self._file is not None:
                elapsed = self._file.tell() / self._file.samplerate
        return ZoneStatus(self._state, song_id=song if self._state != "idle" else None,  # type: ignore[arg-type]
                          volume=self._volume, elapsed_s=elapsed,
                          extra={"queue_length": len(self._queue)})

    def _publish(self, status: ZoneStatus) -> None:
        if status != self._status:
            self._status = status
            if self._on_state is not None:
                self._on_state(status)

    # ------------------------------------------------------------------ Zone

    async def play_now(self, track: Track) -> None:
        self._require()
        position = self._index + 1 if self._index >= 0 else len(self._queue)
        self._queue.insert(position, track)
        self._open(position)
        self._publish(self._current())

    async def set_queue(self, tracks: list[Track], start_index: int = 0, play: bool = True) -> None:
        self._require()
        self._close()
        self._queue = list(tracks)
        self._index = -1
        self._state = "idle"
        if play and tracks:
            self._open(min(max(start_index, 0), len(tracks) - 1))
        self._publish(self._current())

    async def control(self, action: str, *, volume: int | None = None,
                      position_s: float | None = None) -> None:
        self._require()
        if action == "play":
            if self._state == "paused" and self._stream is not None:
                self._stream.start()
                self._state = "playing"
            elif self._state == "idle" and self._queue:
                self._open(max(self._index, 0))
        elif action == "pause":
            if self._state == "playing" and self._stream is not None:
                self._stream.stop()
                self._state = "paused"
        elif action == "stop":
            self._close()
            self._state = "idle"
        elif action in ("next", "previous"):
            target = self._index + (1 if action == "next" else -1)
            if 0 <= target < len(self._queue):
                self._open(target, play=self._state != "paused")
            elif action == "next":
                self._close()
                self._state = "idle"
        elif action == "volume":
            if volume is None:
                raise ZoneError("volume needs a value from 0 to 100")
            with self._lock:
                self._volume = int(np.clip(volume, 0, 100))
        elif action == "seek":
            if position_s is None or self._file is None:
                raise ZoneError("nothing to seek in" if position_s is not None else "seek needs position_s")
            with self._lock:
                frame = int(position_s * self._file.samplerate)
                self._file.seek(min(frame, self._file.frames))
        else:
            raise ZoneError(f"local zones cannot {action!r}")
        self._publish(self._current())
