"""The library's social side: private and shared songs, votes, top voted, statistics."""

from __future__ import annotations

from tests.conftest import BROKER_HOST
from tests.household.test_people import HOUSEHOLD
from tests.probe import MqttProbe


def _make(probe: MqttProbe, **fields: object) -> str:
    reply = probe.command("song/create", {"duration_s": 10, **fields})
    assert reply["ok"], reply
    done = probe.wait_job(reply["job_id"])
    assert done["state"] == "done", done
    return done["song_id"]


def _ids(reply: dict) -> list[str]:
    return [song["id"] for song in reply["songs"]]


def test_private_shared_votes_and_stats(daemon_factory, probe: MqttProbe, broker_port: int) -> None:
    daemon_factory(HOUSEHOLD).start()
    probe.wait_online()
    diary = _make(probe, user="mia", prompt="my secret diary", genre="pop", private=True)
    anthem = _make(probe, user="dad", prompt="family anthem", genre="rock")
    lullaby = _make(probe, user="mia", prompt="lullaby for the baby", genre="ambient")

    # Who sees what: an owner everything, a member the shared songs and their own.
    assert set(_ids(probe.command("library/query", {"as_user": "dad"}))) == {diary, anthem, lullaby}
    assert set(_ids(probe.command("library/query", {"as_user": "mia"}))) == {diary, anthem, lullaby}
    guest_view = probe.command("library/query", {"as_user": "sarah"})
    assert set(_ids(guest_view)) == {anthem, lullaby} and guest_view["total"] == 2
    assert _ids(probe.command("library/query", {"as_user": "mia", "shared": False})) == [diary]
    assert probe.command("library/query", {"as_user": "sarah", "text": "diary"})["total"] == 0

    # A private song is invisible to others, for votes too; only its maker shares it.
    assert probe.command(f"song/{diary}/vote", {"vote": 1, "user": "sarah"})["error"]["code"] \
        == "unknown_song"
    assert probe.command(f"song/{anthem}/share", {"shared": False, "user": "mia"})["error"]["code"] \
        == "forbidden"
    assert probe.command(f"song/{diary}/share", {"shared": True, "user": "mia"})["shared"] is True
    assert diary in _ids(probe.command("library/query", {"as_user": "sarah"}))

    # Votes: one per user per song, sorted by score; the statistics follow.
    for user, song, vote in [("dad", lullaby, 1), ("mia", lullaby, 1), ("sarah", lullaby, 1),
                             ("dad", anthem, 1), ("sarah", anthem, -1), ("sarah", anthem, 1),
                             ("mia", diary, -1)]:
        assert probe.command(f"song/{song}/vote", {"vote": vote, "user": user})["ok"]
    top = probe.command("library/query", {"sort": "top_voted", "as_user": "dad"})
    assert _ids(top) == [lullaby, anthem, diary]
    assert [s["score"] for s in top["songs"]] == [3, 2, -1]

    stats = probe.wait(lambda m: m.topic == f"{probe.base}/library/stats"
                       and m.json()["votes"] == 6).json()
    assert stats["songs"] == 3 and stats["shared"] == 3 and stats["private"] == 0
    assert stats["by_user"] == {"mia": 2, "dad": 1}
    assert [(t["id"], t["score"]) for t in stats["top_voted"]] == [(lullaby, 3), (anthem, 2)]
    late = MqttProbe(BROKER_HOST, broker_port, probe.base)  # a newcomer gets them retained
    try:
        kept = late.wait(lambda m: m.topic == f"{probe.base}/library/stats")
        assert kept.retain and kept.json()["votes"] == 6
    finally:
        late.close()

    # Home Assistant shows them as sensors of the cassetted device.
    config = probe.wait(lambda m: m.topic.endswith("/top_voted/config")).json()
    assert config["state_topic"] == f"{probe.base}/library/stats"
