"""Library queries and votes over the real broker."""

from __future__ import annotations

from tests.probe import MqttProbe


def test_query_filters_sorting_paging_and_votes(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory().start()
    probe.wait_online()
    made = []
    for prompt, genre, room in [("rainy monday", "jazz", "living_room"),
                                ("sunny beach", "pop", None),
                                ("rainy night drive", "electronic", "kids_room")]:
        reply = probe.command("song/create", {"prompt": prompt, "genre": genre, "room": room,
                                              "duration_s": 10, "user": "anna"})
        made.append(probe.wait_job(reply["job_id"])["song_id"])

    everything = probe.command("library/query", {"sort": "oldest"})
    assert everything["total"] == 3 and [s["id"] for s in everything["songs"]] == made
    newest = probe.command("library/query", {"page_size": 2})
    assert [s["id"] for s in newest["songs"]] == made[::-1][:2]
    second_page = probe.command("library/query", {"page_size": 2, "page": 2})
    assert [s["id"] for s in second_page["songs"]] == [made[0]]
    rainy = probe.command("library/query", {"text": "RAINY"})
    assert {s["id"] for s in rainy["songs"]} == {made[0], made[2]}
    assert probe.command("library/query", {"genre": "pop"})["songs"][0]["id"] == made[1]
    assert probe.command("library/query", {"room": "kids_room"})["total"] == 1
    assert probe.command("library/query", {"user": "bob"})["total"] == 0
    song = everything["songs"][0]
    assert song["file"].endswith(".flac") and song["lyrics"] and song["user"] == "anna"

    assert probe.command(f"song/{made[0]}/vote", {"vote": 1, "user": "anna"})["score"] == 1
    assert probe.command(f"song/{made[0]}/vote", {"vote": 1, "user": "anna"})["score"] == 1
    assert probe.command(f"song/{made[0]}/vote", {"vote": -1, "user": "bob"})["score"] == 0
    assert probe.command(f"song/{made[0]}/vote", {"vote": 0, "user": "bob"})["score"] == 1
