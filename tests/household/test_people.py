"""Members, guests, room permissions and quotas, end to end over the real broker."""

from __future__ import annotations

import time

import pytest

from tests.probe import MqttProbe

HOUSEHOLD = """
[household]
enabled = true
identify_by = ["token", "mqtt_username", "user_field"]
trusted_user_field = true   # these tests speak for members by name
anonymous_role = "none"
unknown_user_role = "guest"

[household.quotas.guest]
songs = 2
per_hours = 24

[household.quotas.family]
songs = 5
per_hours = 24

[users.dad]
role = "owner"
mqtt_usernames = ["dad-phone"]

[users.mia]
name = "Mia"
role = "family"

[rooms.master_bedroom]
name = "Master Bedroom"
roles = ["owner"]

[rooms.guest_room]
name = "Guest Room"
roles = ["owner", "family", "guest"]
"""


def _create(probe: MqttProbe, **fields: object) -> dict:
    return probe.command("song/create", {"duration_s": 10, "genre": "pop", **fields})


def test_roles_rooms_and_quotas(daemon_factory, probe: MqttProbe) -> None:
    daemon_factory(HOUSEHOLD).start()
    probe.wait_online()

    nobody = _create(probe)
    assert nobody["ok"] is False and nobody["error"]["code"] == "unauthorized"

    owner = _create(probe, user="dad", room="master_bedroom")
    assert owner["ok"], owner
    quota = owner["quota"]  # no limit: "limit" and "remaining" are left out
    assert {k: quota.get(k) for k in ("user", "role", "limit", "used", "remaining", "window_h")} \
        == {"user": "dad", "role": "owner", "limit": None, "used": 1, "remaining": None,
            "window_h": 24.0}
    assert time.time() + 23.9 * 3600 < quota["resets_at"] < time.time() + 24 * 3600

    family_in_master = _create(probe, user="mia", room="master_bedroom")
    assert family_in_master["error"]["code"] == "forbidden"
    assert family_in_master["error"]["field"] == "room"
    family = _create(probe, user="Mia", room="living_room")  # names are matched as ids
    assert family["ok"] and family["quota"]["limit"] == 5 and family["quota"]["remaining"] == 4
    assert family["quota"]["user"] == "mia"

    # "My name is Sarah": a name nobody configured is a guest, counted by name.
    first = _create(probe, user="Sarah", room="guest_room", request_id="sarah-1")
    assert first["ok"] and first["quota"]["role"] == "guest"
    assert (first["quota"]["used"], first["quota"]["remaining"]) == (1, 1)
    repeat = _create(probe, user="Sarah", room="guest_room", request_id="sarah-1")
    assert repeat["duplicate"] is True and repeat["quota"]["used"] == 1  # never charged twice
    assert _create(probe, user="sarah", room="master_bedroom")["error"]["code"] == "forbidden"
    second = _create(probe, user="sarah", room="living_room")
    assert second["ok"] and second["quota"]["remaining"] == 0
    third = _create(probe, user="sarah", room="living_room")
    assert third["ok"] is False and third["error"]["code"] == "quota_exceeded"
    assert third["quota"]["used"] == 2 and third["quota"]["remaining"] == 0
    assert "2 of 2" in third["error"]["message"]
    asked = probe.command("user/quota", {"user": "sarah"})
    assert asked["ok"] and asked["quota"]["remaining"] == 0 and asked["quota"]["limit"] == 2

    # The same gate for spoken requests.
    spoken = probe.command("voice", {"text": "play some jazz in the guest room", "user": "sarah"})
    assert spoken["error"]["code"] == "quota_exceeded"
    introduced = probe.command("voice", {"text": "My name is Sarah, create chill electronic"})
    assert introduced["error"]["code"] == "quota_exceeded"
    assert introduced["quota"]["user"] == "sarah"
    question = probe.command("voice", {"text": "My name is Sarah. How many songs can I create?"})
    assert question["ok"] and "job_id" not in question
    assert question["quota"]["user"] == "sarah" and question["quota"]["remaining"] == 0
    newcomer = probe.command("voice", {"text": "my name is Tom and play upbeat pop"})
    assert newcomer["ok"] and newcomer["quota"]["user"] == "tom"
    assert newcomer["request"]["user"] == "tom" and newcomer["request"]["genre"] == "pop"
    mia_voice = probe.command("voice", {"text": "a relaxing jazz song in the master bedroom",
                                        "user": "mia"})
    assert mia_voice["error"]["code"] == "forbidden"

    # A cancelled request gives its song back.
    queued = _create(probe, user="mia", room="living_room", duration_s=60)
    before = queued["quota"]["used"]
    assert probe.command(f"job/{queued['job_id']}/cancel", {})["error"]["code"] == "unauthorized"
    assert probe.command(f"job/{queued['job_id']}/cancel", {"user": "mia"})["ok"]
    probe.wait_job(queued["job_id"], timeout=120)
    assert probe.command("user/quota", {"user": "mia"})["quota"]["used"] == before - 1


def test_guest_passes_tokens_and_expiry(daemon_factory, probe: MqttProbe) -> None:
    daemon = daemon_factory(HOUSEHOLD).start()
    probe.wait_online()

    denied = probe.command("guest/create", {"name": "Eve", "user": "evil"})
    assert denied["error"]["code"] == "forbidden"  # guests cannot make guests
    made = probe.command("guest/create", {"name": "Sarah Connor", "rooms": ["living_room"],
                                          "quota": 1, "user": "mia"})
    assert made["ok"] and made["user_id"] == "sarah_connor" and made["song_limit"] == 1
    token = made["token"]
    assert len(token) >= 24 and made["expires_at"] > time.time() + 23 * 3600

    assert _create(probe, token=token, room="kids_room")["error"]["code"] == "forbidden"
    ok = _create(probe, token=token, room="living_room", user="dad")  # the token wins
    assert ok["ok"] and ok["quota"]["user"] == "sarah_connor" and ok["quota"]["limit"] == 1
    assert _create(probe, token=token, room="living_room")["error"]["code"] == "quota_exceeded"
    song = probe.wait_job(ok["job_id"])
    assert song["state"] == "done"
    latest = probe.wait(lambda m: m.topic == f"{probe.base}/song/latest").json()
    assert latest["user"] == "sarah_connor"

    bad = _create(probe, token="not-a-real-token", room="living_room")
    assert bad["error"]["code"] == "unauthorized" and bad["error"]["field"] == "token"

    short = probe.command("guest/create", {"name": "Tom", "ttl_h": 0.0005, "user": "dad"})
    time.sleep(2.2)
    expired = _create(probe, token=short["token"], room="living_room")
    assert expired["error"]["code"] == "unauthorized" and "expired" in expired["error"]["message"]

    removed = probe.command("guest/sarah_connor/remove", {"user": "dad"})
    assert removed["ok"]
    assert _create(probe, token=token)["error"]["code"] == "unauthorized"

    # The token went to the member who asked for it, and nowhere else.
    daemon.stop()
    carrying = [m.topic for m in probe.messages if token.encode() in m.payload
                and not m.topic.endswith("/song/create")]  # but what the guest sent
    assert len(carrying) == 1 and "/replies/" in carrying[0]
    assert token not in daemon.log()
    for path in daemon.state_dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path

    # Passes that ran out are swept (at start, then every minute) and announced.
    daemon_factory(HOUSEHOLD).start()
    gone = probe.wait(lambda m: m.topic == f"{probe.base}/event"
                      and m.json()["type"] == "guest_expired", timeout=30).json()
    assert gone["user"] == "tom"


def test_household_off_is_open(daemon_factory, probe: MqttProbe) -> None:
    """Without [household] enabled, everybody is the owner: nothing is refused for who asks."""
    daemon_factory().start()
    probe.wait_online()
    reply = _create(probe, user="anybody", room="kids_room")
    assert reply["ok"] and reply["quota"]["role"] == "owner" and "limit" not in reply["quota"]


@pytest.fixture
def acl_broker(tmp_path):
    """A private Mosquitto where each login may publish only under `<base>/as/<login>/`."""
    from tests.fixtures.services import free_port, start_mosquitto, stop_process

    port = free_port()
    logins = {"cassetted": "daemon-pw", "dad-phone": "dad-pw", "visitor": "visitor-pw"}
    proc = start_mosquitto(port, tmp_path, logins=logins,
                           acl="user cassetted\ntopic readwrite #\n\n"
                               "pattern read cassetted-acl/#\n"
                               "pattern write cassetted-acl/as/%u/#\n")
    yield port, logins
    stop_process(proc)


def test_mqtt_login_is_the_identity(daemon_factory, acl_broker) -> None:
    from tests.conftest import BROKER_HOST

    port, logins = acl_broker
    base = "cassetted-acl"
    daemon_factory(HOUSEHOLD, port=port, CASSETTED_MQTT__BASE_TOPIC=base,
                   CASSETTED_MQTT__DISCOVERY_PREFIX=f"{base}/discovery",
                   CASSETTED_MQTT__USERNAME="cassetted",
                   CASSETTED_MQTT__PASSWORD=logins["cassetted"]).start()
    dad = MqttProbe(BROKER_HOST, port, base, username="dad-phone", password=logins["dad-phone"])
    visitor = MqttProbe(BROKER_HOST, port, base, username="visitor", password=logins["visitor"])
    try:
        dad.wait_online()
        # The broker proves the login; the daemon maps it to [users.dad] (an owner).
        mine = dad.command("as/dad-phone/song/create",
                           {"duration_s": 10, "room": "master_bedroom", "user": "mia"})
        assert mine["ok"] and mine["quota"]["user"] == "dad" and mine["quota"]["role"] == "owner"
        # A login nobody configured is a guest; claiming to be dad in "user" changes nothing,
        # because the login comes first in identify_by.
        theirs = visitor.command("as/visitor/song/create",
                                 {"duration_s": 10, "room": "master_bedroom", "user": "dad"})
        assert theirs["error"]["code"] == "forbidden"
        # Posing as another login: the broker drops it, so nothing answers.
        with pytest.raises(TimeoutError):
            visitor.command("as/dad-phone/song/create",
                            {"duration_s": 10, "room": "master_bedroom"}, timeout=2)
    finally:
        dad.close()
        visitor.close()
