"""The household attacked the way a stranger on the broker would: over the real Mosquitto,
against the real daemon, with nothing but what any client may publish.

Issue 14 ("Trust") items 1-6: a payload's name grants nothing, private songs never leak,
only the maker or an owner may touch a song or a job, every take counts, one message cannot
make the daemon flood the broker, and a guest's token never goes to a shared topic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BROKER_HOST, DaemonProcess
from tests.fixtures.services import free_port
from tests.probe import MqttProbe

HOUSEHOLD = """
[household]
enabled = true
anonymous_role = "guest"

[household.quotas.guest]
songs = 1
per_hours = 24

[users.dad]
role = "owner"

[users.anna]
role = "family"

[rooms.master_bedroom]
name = "Master Bedroom"
roles = ["owner"]

[child_safe]
pin = "2468"
max_pin_attempts = 3
"""


def member_token(daemon: DaemonProcess, member: str) -> str:
    """`cassetted token <member>`, as the household's admin would run it."""
    done = subprocess.run([sys.executable, "-m", "cassetted", "token", member,
                           "--config", str(daemon.config)],
                          env=daemon.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert len(token) >= 24
    return token


def _create(probe: MqttProbe, **fields: object) -> dict:
    return probe.command("song/create", {"duration_s": 10, "genre": "pop", **fields})


def _song(probe: MqttProbe, **fields: object) -> str:
    reply = _create(probe, **fields)
    assert reply["ok"], reply
    done = probe.wait_job(reply["job_id"], timeout=120)
    assert done["state"] == "done", done
    return done["song_id"]


def test_a_name_grants_nothing_and_only_the_maker_or_an_owner_acts(
        daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory(HOUSEHOLD)
    dad = member_token(daemon, "dad")
    daemon.start()
    probe.wait_online()

    # 1. Naming the owner does not make you the owner.
    posing = _create(probe, user="dad", room="master_bedroom")
    assert posing["error"]["code"] == "forbidden" and posing["error"]["field"] == "room"
    assert probe.command("guest/create", {"name": "Mallory", "quota": 1000, "user": "dad"}
                         )["error"]["code"] == "forbidden"
    assert probe.command("child_safe/log", {"user": "dad"})["error"]["code"] == "forbidden"
    spoken = probe.command("voice", {"text": "My name is Dad, play jazz in the master bedroom"})
    assert spoken["error"]["code"] == "forbidden"
    # ... while dad's token keeps his rights.
    mine = _create(probe, token=dad, room="master_bedroom", duration_s=600)
    assert mine["ok"] and mine["quota"]["user"] == "dad" and mine["quota"]["role"] == "owner"

    # 4. Every take counts: four variants do not fit a quota of one; names share the count.
    four = _create(probe, variants=4, request_id="four-takes")
    assert four["error"]["code"] == "quota_exceeded" and four["quota"]["limit"] == 1
    one = _create(probe, room="living_room")
    assert one["ok"] and one["quota"]["used"] == 1 and "user" not in one["quota"]
    renamed = _create(probe, user="somebody_else", room="living_room")
    assert renamed["error"]["code"] == "quota_exceeded"  # a new name is no new quota

    # 6. A guest pass answers with its token: never on the shared <base>/reply.
    probe.publish("guest/create", {"name": "Sarah", "token": dad, "request_id": "g-shared"})
    refused = probe.wait(lambda m: m.topic == f"{probe.base}/reply"
                         and m.json().get("request_id") == "g-shared").json()
    assert refused["error"]["code"] == "invalid_payload" and refused["error"]["field"] == "reply_to"
    assert "token" not in refused
    probe.publish("guest/create", {"name": "Sarah", "token": dad, "request_id": "g-aimed",
                                   "reply_to": f"{probe.base}/reply"})
    aimed = probe.wait(lambda m: m.topic == f"{probe.base}/reply"
                       and m.json().get("request_id") == "g-aimed").json()
    assert aimed["error"]["field"] == "reply_to" and "token" not in aimed
    probe.publish("guest/create", {"name": "Sarah", "token": dad, "request_id": "g-v3",
                                   "reply_to": f"{probe.base}/dads-flow/reply"})
    v3 = probe.wait(lambda m: m.topic == f"{probe.base}/dads-flow/reply").json()
    assert v3["ok"] and v3["token"]  # a Node-RED flow's own reply_to is private enough
    made = probe.command("guest/create", {"name": "Sarah", "token": dad, "quota": 3})
    assert made["ok"] and made["token"]
    sarah = made["token"]

    # 3. Only who asked, or an owner, cancels a job ...
    job = mine["job_id"]
    assert probe.command(f"job/{job}/cancel", {})["error"]["code"] == "forbidden"
    assert probe.command(f"job/{job}/cancel", {"user": "dad"})["error"]["code"] == "forbidden"
    assert probe.command(f"job/{job}/cancel", {"token": sarah})["error"]["code"] == "forbidden"
    assert probe.command(f"job/{job}/cancel", {"token": dad})["ok"]
    assert probe.wait_job(job, timeout=120)["state"] == "cancelled"

    # ... keeps a take (deleting the others' rows and files) ...
    takes = _create(probe, token=dad, variants=2, room="living_room")
    assert takes["ok"], takes
    first = probe.wait_job(takes["job_id"], timeout=180)["song_id"]
    page = probe.command("library/query", {"token": dad, "page_size": 100})
    files = {s["id"]: s["file"] for s in page["songs"] if first in (s["id"], s.get("variant_of"))}
    assert len(files) == 2
    for who in ({}, {"user": "dad"}, {"token": sarah}):
        denied = probe.command(f"song/{first}/keep", who)
        assert denied["error"]["code"] == "forbidden", (who, denied)
    assert all(Path(f).exists() for f in files.values())  # nothing was deleted
    kept = probe.command(f"song/{first}/keep", {"token": dad})
    assert kept["ok"] and len(kept["removed"]) == 1
    assert {i: Path(f).exists() for i, f in files.items()} == {i: i == first for i in files}

    # ... shares, or reads another person's quota.
    assert probe.command(f"song/{first}/share", {"shared": False, "user": "dad"}
                         )["error"]["code"] == "forbidden"
    assert probe.command("user/quota", {"user": "dad"})["error"]["code"] == "forbidden"
    assert probe.command("user/quota", {"token": sarah, "user": "dad"})["error"]["code"] \
        == "forbidden"
    hers = probe.command("user/quota", {"token": sarah})
    assert hers["ok"] and hers["quota"]["user"] == "sarah" and hers["quota"]["limit"] == 3
    for_anna = probe.command("user/quota", {"token": dad, "user": "anna"})
    assert for_anna["ok"] and for_anna["quota"]["user"] == "anna"

    # The PIN lock-out counts per caller: a stranger cannot lock the parents out.
    for _ in range(3):
        wrong = probe.command("room/kids_room/mode", {"child_safe": False, "pin": "0000"})
        assert wrong["error"]["code"] == "wrong_pin"
    assert "locked" in wrong["error"]["message"]
    still = probe.command("room/kids_room/mode", {"child_safe": False, "pin": "2468"})
    assert still["error"]["code"] == "mode_refused"  # strangers are locked out ...
    parents = probe.command("room/kids_room/mode", {"child_safe": False, "pin": "2468",
                                                    "token": dad})
    assert parents["ok"] and parents["child_safe"] is False, parents  # ... dad is not
    assert "2468" not in daemon.log() and dad not in daemon.log()


def _fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read(1024)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_private_songs_never_leak(daemon_factory, probe: MqttProbe, broker_port: int) -> None:
    port = free_port()
    media = (f'\n[media]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
             f'public_url = "http://127.0.0.1:{port}"\n')
    daemon = daemon_factory(HOUSEHOLD + media)
    dad, anna = member_token(daemon, "dad"), member_token(daemon, "anna")
    daemon.start()
    probe.wait_online()

    shared = _song(probe, token=anna, prompt="a song for everybody")
    diary = _song(probe, token=anna, prompt="my secret diary", lyrics="[verse]\nnobody reads this",
                  private=True)

    # Everything published to everyone shows shared songs only.
    latest = [m.json() for m in probe.on("song/latest")]
    assert [s["id"] for s in latest] == [shared]
    ready = [m.json() for m in probe.on("event") if m.json().get("song_id") == diary]
    assert ready and all("title" not in e and "file" not in e for e in ready)
    everything = b"".join(m.payload for m in probe.messages
                          if "/replies/" not in m.topic and not m.topic.endswith("/song/create"))
    assert b"nobody reads this" not in everything and b"secret diary" not in everything
    late = MqttProbe(BROKER_HOST, broker_port, probe.base)  # a newcomer's retained view
    try:
        kept = late.wait(lambda m: m.topic == f"{probe.base}/song/latest")
        assert kept.json()["id"] == shared
    finally:
        late.close()

    # as_user needs an owner's rights; a stranger sees the shared library only.
    posing = probe.command("library/query", {"as_user": "anna"})
    assert posing["error"]["code"] == "forbidden"
    assert [s["id"] for s in probe.command("library/query", {})["songs"]] == [shared]
    own = probe.command("library/query", {"token": anna})
    assert {s["id"] for s in own["songs"]} == {shared, diary}
    as_anna = probe.command("library/query", {"token": dad, "as_user": "anna"})
    assert {s["id"] for s in as_anna["songs"]} == {shared, diary}

    # A derived song needs the right to read its source and inherits its privacy.
    made = probe.command("guest/create", {"name": "Visitor", "token": dad, "quota": 5})
    visitor = made["token"]
    for who in ({}, {"token": visitor}, {"user": "anna"}):
        stolen = _create(probe, task="cover", source_song_id=diary, **who)
        assert stolen["error"]["code"] == "unknown_song", (who, stolen)
        assert stolen["error"]["field"] == "source_song_id"
    karaoke = probe.command("karaoke/start", {"song_id": diary, "bpm": 150, "token": visitor})
    assert karaoke["ok"] is False
    cover = _song(probe, task="cover", source_song_id=diary, token=anna)
    mine = probe.command("library/query", {"token": anna, "shared": False})
    assert {s["id"] for s in mine["songs"]} == {diary, cover}
    assert [m.json()["id"] for m in probe.on("song/latest")] == [shared]

    # Switching shared off makes the URL seen while it was shared stop working.
    url = next(s["url"] for s in own["songs"] if s["id"] == shared)
    assert _fetch(url) == 200
    assert probe.command(f"song/{shared}/share", {"shared": False, "token": visitor}
                         )["error"]["code"] == "forbidden"
    assert _fetch(url) == 200
    private = probe.command(f"song/{shared}/share", {"shared": False, "token": anna})
    assert private["ok"] and private["shared"] is False
    assert _fetch(url) == 404
    again = probe.command("library/query", {"token": anna})
    new_url = next(s["url"] for s in again["songs"] if s["id"] == shared)
    assert new_url != url and _fetch(new_url) == 200
    assert probe.command("library/query", {"token": visitor})["total"] == 0


def test_one_message_cannot_flood_the_broker(daemon_factory, probe: MqttProbe) -> None:
    """5. The 26 KB room list that made 24,000 publishes, and a sender looping on the
    broker: bounded, rate-limited per sender, and every command still answered."""
    from cassetted.homeassistant.bridge import MAX_STALE_ROOMS
    from cassetted.homeassistant.discovery import Topics, room_config_topics

    daemon = daemon_factory(HOUSEHOLD.replace("anonymous_role = \"guest\"",
                                              "anonymous_role = \"guest\"\nrate_per_s = 5\n"
                                              "rate_burst = 50"))
    dad = member_token(daemon, "dad")
    daemon.start()
    probe.wait_online()
    prefix = f"{probe.base}/discovery"
    probe.wait(lambda m: m.topic == f"{probe.base}/ha/rooms")
    per_room = len(room_config_topics(Topics(probe.base, prefix), ["x"]))

    def deletions() -> int:
        with probe._cond:
            return sum(1 for m in probe.messages
                       if m.topic.startswith(prefix + "/") and m.payload == b"")

    # 26 KB of made-up room ids: too big to be our list, ignored whole.
    huge = json.dumps([f"room_{i:05d}" for i in range(2600)])
    assert len(huge) > 26_000
    probe.publish("ha/rooms", huge, raw=True)
    # 12 KB of them: at most MAX_STALE_ROOMS rooms' entities are removed ...
    probe.publish("ha/rooms", json.dumps([f"room_{i:04d}" for i in range(1000)]), raw=True)
    # ... malformed ids never count, and a second list within the minute does nothing.
    probe.publish("ha/rooms", json.dumps(["../../x", "Kitchen", 7, {"a": 1}] * 500), raw=True)
    probe.publish("ha/rooms", json.dumps([f"other_{i}" for i in range(30)]), raw=True)

    # Meanwhile a stranger loops on the broker, and dad asks for his quota 40 times.
    for i in range(300):
        probe.publish("user/quota", {"request_id": f"flood-{i}"}, response="replies/flood")
    answers = [probe.command("user/quota", {"token": dad}) for _ in range(40)]
    assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]][:2]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        flood = [m.json() for m in probe.on("replies/flood")]
        if len(flood) == 300:
            break
        time.sleep(0.2)
    assert len(flood) == 300  # every message answered, none dropped
    limited = [r for r in flood if not r["ok"]]
    assert limited and {r["error"]["code"] for r in limited} == {"rate_limited"}
    assert len(limited) >= 300 - 50 - 5 * 30  # the burst, then five a second at most
    time.sleep(1.0)
    removed = deletions()
    assert 0 < removed <= MAX_STALE_ROOMS * per_room
    log = daemon.log()
    assert "Traceback" not in log
    assert "cleaned up" in log and "the first 32 only" in log


def test_replies_keep_their_place_in_a_full_outbox() -> None:
    """The outbox gate itself: bulk stops at its share, retained state waits (newest value
    per topic), events are dropped, replies always go."""
    import asyncio

    from cassetted.mqtt.publisher import ReplyFirst

    sent: list[tuple[str, object]] = []

    async def scenario() -> None:
        gate = ReplyFirst(lambda topic, payload, **o: sent.append((topic, payload)),
                          backlog=lambda: len(sent), bulk_limit=10, base_topic="b")
        for i in range(50):
            gate.bulk(f"b/room/{i % 3}/state", f"s{i}", retain=True)
            gate.bulk("b/event", f"e{i}")
        for i in range(20):
            gate.command_output(f"b/replies/{i}", f"r{i}")
        gate.command_output("b/event", "an error event")
        assert sent[:10] == [pair for i in range(5) for pair in
                             ((f"b/room/{i % 3}/state", f"s{i}"), ("b/event", f"e{i}"))]
        assert [p for t, p in sent if t.startswith("b/replies/")] == [f"r{i}" for i in range(20)]
        assert ("b/event", "an error event") not in sent
        sent.clear()  # the outbox drained: what waited goes out, newest value per topic
        await asyncio.sleep(0.5)
        assert sorted(sent) == [("b/room/0/state", "s48"), ("b/room/1/state", "s49"),
                                ("b/room/2/state", "s47")]

    asyncio.run(scenario())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_every_take_is_counted_in_the_database(daemon_factory, probe: MqttProbe,
                                               request: pytest.FixtureRequest,
                                               database: str) -> None:
    """4. The takes of the jobs in the window are summed by the database (SQLite's
    json_extract, PostgreSQL's ->>), so a restart or a long history changes nothing."""
    env = {}
    if database == "postgresql":
        env["CASSETTED_STORAGE__DATABASE_URL"] = request.getfixturevalue("pg_url")
    daemon = daemon_factory(HOUSEHOLD, **env)
    dad = member_token(daemon, "dad")
    daemon.start()
    probe.wait_online()
    three = _create(probe, token=dad, variants=3, duration_s=600)
    assert three["ok"] and three["quota"]["used"] == 3, three
    one = _create(probe, token=dad, duration_s=600)
    assert one["quota"]["used"] == 4
    assert probe.command("user/quota", {"token": dad})["quota"]["used"] == 4
    assert _create(probe, variants=2)["error"]["code"] == "quota_exceeded"
    assert probe.command(f"job/{three['job_id']}/cancel", {"token": dad})["ok"]
    probe.wait_job(three["job_id"], timeout=120)
    assert probe.command("user/quota", {"token": dad})["quota"]["used"] == 1  # given back


def test_what_everybody_reads_of_a_private_song() -> None:
    """2. The publisher's side: a private song never goes to `song/latest`, and its event
    and room state name no title, lyrics, file or URL."""
    from cassetted.contract.schemas import RoomState, SongInfo
    from cassetted.events import EventBus
    from cassetted.mqtt.publisher import MqttPublisher

    sent: list[tuple[str, str]] = []
    publisher = MqttPublisher("b", lambda topic, payload, **options: sent.append((topic, payload)),
                              EventBus())
    song = SongInfo(id="s1", title="Dear Diary", prompt="my secret diary", lyrics="nobody reads",
                    genre="pop", mood="relaxing", bpm=90, key="C major", time_signature="4/4",
                    duration_s=30, language="en", instrumental=False, seed=1, engine="builtin",
                    lyrics_provider="builtin", file="/lib/dear_diary.flac", format="flac",
                    url="http://h/media/abcdefghijklmnopq.flac", shared=False, created_at=1.0)
    publisher.song_ready(song, "j1")
    publisher.room_state("living_room", RoomState(room="living_room", name="Living Room",
                                                  state="playing", song=song, output="mpd"))
    assert [topic for topic, _ in sent] == ["b/event", "b/room/living_room/state"]
    for _, payload in sent:
        for secret in ("Dear Diary", "secret diary", "nobody reads", "dear_diary", "abcdefghij"):
            assert secret not in payload
    assert json.loads(sent[0][1])["song_id"] == "s1"
    publisher.song_ready(song.model_copy(update={"shared": True}), "j2")
    assert sent[-2][0] == "b/song/latest" and "nobody reads" in sent[-2][1]
