"""Karaoke end to end: the real daemon, broker and MPD; a remix at a new tempo, its LRC
sidecar, and the lyrics a bathroom mirror shows while it plays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassetted.contract.schemas import SongSpec
from cassetted.features.karaoke import remix_duration
from cassetted.library import lrc
from tests.conftest import BROKER_HOST
from tests.fixtures.services import MpdServer
from tests.probe import MqttProbe

LYRICS = """[Verse]
A long long time ago
I can still remember how
[Chorus]
Bye bye to the morning pie
Drove my car to the levee high
[Verse 2]
Now for ten years we've been on our own
And moss grows fat on a rolling stone
[Chorus]
Bye bye to the morning pie
Drove my car to the levee high
"""


@pytest.fixture
def mpd_server(tmp_path: Path) -> Iterator[MpdServer]:
    server = MpdServer(tmp_path / "mpd").start()
    yield server
    server.stop()


def _bathroom(server: MpdServer) -> str:
    return (f'\n[rooms.bathroom]\nname = "Bathroom"\noutput = "mpd"\n'
            f'[rooms.bathroom.mpd]\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'music_dir = "{server.music_dir}"\n')


def _spec(song: dict) -> SongSpec:
    fields = ("prompt", "genre", "mood", "bpm", "key", "time_signature", "duration_s", "language",
              "instrumental", "seed", "title", "lyrics")
    return SongSpec(**{name: song[name] for name in fields})


def _sidecar(song: dict) -> str:
    path = Path(song["file"]).with_suffix(".lrc")
    assert path.exists(), f"no sidecar beside {song['file']}"
    return path.read_text()


def test_karaoke_remixes_a_song_and_the_mirror_shows_its_lyrics(
        daemon_factory, probe: MqttProbe, mpd_server: MpdServer, broker_port: int) -> None:
    daemon_factory(_bathroom(mpd_server)).start()
    probe.wait_online()
    made = probe.command("song/create", {"prompt": "american pie", "genre": "rock", "bpm": 120,
                                         "key": "G major", "duration_s": 24, "lyrics": LYRICS})
    source_id = probe.wait_job(made["job_id"])["song_id"]

    # A title, case-insensitive and in part, finds the song; the remix goes to the bathroom.
    reply = probe.command("karaoke/start", {"title": "AMERICAN", "bpm": 150, "room": "bathroom"})
    assert reply["ok"] is True, reply
    assert (reply["source_song_id"], reply["title"], reply["mode"]) == (source_id, "American Pie",
                                                                        "karaoke")
    probe.wait(lambda m: m.topic == f"{probe.base}/room/bathroom/state"
               and m.json().get("mode") == "karaoke")
    done = probe.wait_job(reply["job_id"])
    assert done["state"] == "done", done
    songs = {s["id"]: s for s in probe.command("library/query", {})["songs"]}
    source, remix = songs[source_id], songs[done["song_id"]]
    assert remix["title"] == "American Pie (cover)" and remix["engine"] == "builtin"
    assert remix["bpm"] == 150 and remix["room"] == "bathroom"
    for same in ("key", "genre", "mood", "seed", "lyrics", "time_signature"):
        assert remix[same] == source[same], same
    assert remix["duration_s"] == pytest.approx(remix_duration(24, 120, 150))

    # Both songs have their LRC beside the audio: the remix's lines are the source's, sung
    # at 120/150 of the time, and they are what the built-in engine's arrangement sings.
    source_lines, remix_lines = lrc.parse_lrc(_sidecar(source)), lrc.parse_lrc(_sidecar(remix))
    assert "[ti:American Pie (cover)]" in _sidecar(remix) and len(remix_lines) >= 4
    assert [text for _, text in remix_lines] == [text for _, text in source_lines]
    assert [t for t, _ in remix_lines] == pytest.approx([t * 120 / 150 for t, _ in source_lines],
                                                        abs=0.011)
    expected = lrc.timed_lines(_spec(remix))
    assert [t for t, _ in remix_lines] == pytest.approx([t for t, _ in expected], abs=0.006)

    # The remix plays in the bathroom; the mirror gets its timed lyrics; stopped, a blank page.
    shown = probe.wait(lambda m: m.topic == f"{probe.base}/room/bathroom/lyrics"
                       and m.json()["song_id"] == remix["id"], timeout=30).json()
    assert shown["lrc"] == _sidecar(remix) and shown["title"] == "American Pie (cover)"
    assert [(line["t"], line["text"]) for line in shown["lines"]] == [
        (round(t, 2), text) for t, text in remix_lines]
    assert abs(shown["started_at"] - time.time()) < 60
    # MPD clients find the lyrics beside the file MPD plays.
    assert (mpd_server.music_dir / "cassetted" / f"{remix['id']}.lrc").read_text() == _sidecar(remix)
    assert probe.command("room/bathroom/set", {"action": "stop"})["ok"] is True
    cleared = probe.wait(lambda m: m.topic == f"{probe.base}/room/bathroom/lyrics"
                         and m.json()["lines"] == []).json()
    assert cleared["song_id"] is None and cleared["lrc"] == ""
    late = MqttProbe(BROKER_HOST, broker_port, probe.base)  # what a mirror switched on now sees
    try:
        retained = late.wait(lambda m: m.topic == f"{probe.base}/room/bathroom/lyrics")
        assert retained.retain and retained.json() == cleared
    finally:
        late.close()

    # "Karaoke mode, American Pie at 140 BPM": the original again, not the cover of it.
    spoken = probe.command("voice", {"text": "Karaoke mode, American Pie at 140 BPM"})
    assert spoken["ok"] is True, spoken
    assert (spoken["source_song_id"], spoken["bpm"]) == (source_id, 140)
    assert probe.wait_job(spoken["job_id"])["state"] == "done"

    # Unknown songs and incomplete commands are answered, never queued.
    missing = probe.command("karaoke/start", {"song_id": "nope", "bpm": 150})
    assert missing["error"] == {"code": "unknown_song", "field": "song_id",
                                "message": "no song 'nope'"}
    untitled = probe.command("karaoke/start", {"title": "Stairway to Nowhere", "bpm": 150})
    assert untitled["error"]["code"] == "unknown_song" and untitled["error"]["field"] == "title"
    assert probe.command("karaoke/start", {"bpm": 150})["error"]["code"] == "invalid_payload"
    assert probe.command("karaoke/start", {"song_id": source_id, "bpm": 999}
                         )["error"]["field"] == "bpm"
    assert probe.command("karaoke/start", {"song_id": source_id, "bpm": 150, "room": "garage"}
                         )["error"]["code"] == "unknown_room"
