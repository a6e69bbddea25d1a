"""Covers through the daemon with the built-in engine: a karaoke remix at a new tempo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from tests.probe import MqttProbe


def test_cover_at_a_new_tempo_keeps_the_song(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    original = probe.command("song/create", {"prompt": "american pie", "genre": "rock",
                                             "bpm": 120, "key": "G major", "duration_s": 12})
    source = probe.wait_job(original["job_id"])
    cover = probe.command("song/create", {"task": "cover", "source_song_id": source["song_id"],
                                          "bpm": 150, "instrumental": True})
    assert cover["ok"] is True, cover
    done = probe.wait_job(cover["job_id"])
    assert done["state"] == "done", done
    songs = {s["id"]: s for s in probe.command("library/query", {})["songs"]}
    remix, first = songs[done["song_id"]], songs[source["song_id"]]
    assert (remix["bpm"], remix["key"], remix["genre"], remix["seed"]) == (150, "G major", "rock",
                                                                         first["seed"])
    assert remix["duration_s"] == first["duration_s"] and remix["instrumental"] is True
    a, _ = soundfile.read(first["file"])
    b, _ = soundfile.read(remix["file"])
    assert a.shape == b.shape and not np.allclose(a, b)

    assert probe.command("song/create", {"task": "cover", "source_song_id": "nope"}
                         )["error"] == {"code": "unknown_song", "field": "source_song_id",
                                        "message": "no song 'nope'"}
    assert probe.command("song/create", {"task": "cover"})["error"]["field"] == "source_song_id"
    repaint = probe.command("song/create", {"task": "repaint", "source_song_id": source["song_id"],
                                            "repaint_start_s": 2, "repaint_end_s": 4})
    failed = probe.wait_job(repaint["job_id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "unsupported"
    assert "cannot repaint" in failed["error"]["message"]


def test_variants_then_keep_one(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "three takes", "duration_s": 10,
                                          "variants": 3, "seed": 100})
    done = probe.wait_job(reply["job_id"])
    ready = next(e for e in probe.job_events(reply["job_id"]) if e["state"] == "ready")
    assert len(ready["variants"]) == 2
    songs = {s["id"]: s for s in probe.command("library/query", {})["songs"]}
    assert len(songs) == 3 and songs[done["song_id"]]["seed"] == 100
    takes = [songs[i] for i in ready["variants"]]
    assert sorted(t["seed"] for t in takes) == [101, 102]
    assert all(t["variant_of"] == done["song_id"] for t in takes)
    audio = [soundfile.read(s["file"])[0] for s in songs.values()]
    assert not np.allclose(audio[0], audio[1]) and not np.allclose(audio[1], audio[2])

    kept = probe.command(f"song/{ready['variants'][1]}/keep", {})
    assert kept["ok"] and kept["song_id"] == ready["variants"][1]
    assert sorted(kept["removed"]) == sorted([done["song_id"], ready["variants"][0]])
    left = probe.command("library/query", {})["songs"]
    assert [s["id"] for s in left] == [ready["variants"][1]] and left[0].get("variant_of") is None
    for song in songs.values():
        assert (song["id"] == ready["variants"][1]) == Path(song["file"]).exists()
    again = probe.command(f"song/{ready['variants'][1]}/keep", {})
    assert again["error"]["code"] == "invalid_state"
    assert probe.command("song/create", {"variants": 5})["error"]["field"] == "variants"
