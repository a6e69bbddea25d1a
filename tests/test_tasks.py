"""Covers through the daemon with the built-in engine: a karaoke remix at a new tempo."""

from __future__ import annotations

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
