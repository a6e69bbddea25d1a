"""The examples load, reference what exists, and (Node-RED) speak the contract."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cassetted.config import Settings
from cassetted.contract.schemas import SongRequest
from cassetted.homeassistant import discovery
from cassetted.homeassistant.panel import Panel

ROOT = Path(__file__).parent.parent.parent
EXAMPLES = ROOT / "examples"
FLOW = EXAMPLES / "node-red" / "cassetted-request-flow.json"

HARNESS = r"""
const fs = require('fs');
const flowJson = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
const steps = JSON.parse(fs.readFileSync(0, 'utf8'));
const context = {};
const flow = { get: (k) => context[k], set: (k, v) => { context[k] = v; } };
const env = { get: () => undefined };
const out = [];
for (let [id, msg] of steps) {
  const asked = out.length ? out[0][1].payload.request_id : undefined;
  if (msg === 'REPLY') {  // the daemon's reply to the request built first
    msg = { payload: { ok: true, request_id: asked, job_id: 'j1', state: 'queued' } };
  } else if (typeof msg === 'string') {  // a job event of that request, as the daemon sends it
    msg = { payload: { job_id: 'j1', request_id: asked, state: msg,
                       progress: msg === 'done' ? 1.0 : 0.0 } };
  }
  const fnNode = flowJson.find((n) => n.id === id);
  const node = { status: () => {}, warn: () => {}, error: () => {} };
  const run = new Function('msg', 'flow', 'node', 'env', fnNode.func);
  out.push([id, run(msg, flow, node, env)]);
}
process.stdout.write(JSON.stringify(out));
"""


def _yaml() -> Any:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!input", lambda loader, node: {"!input": loader.construct_scalar(node)})
    return yaml, Loader


def test_node_red_flow_is_wired_and_importable() -> None:
    flow = json.loads(FLOW.read_text())
    ids = {node["id"] for node in flow}
    assert len(ids) == len(flow)
    broker = next(n for n in flow if n["type"] == "mqtt-broker")
    assert broker["protocolVersion"] == "4"  # MQTT 3.1.1: replies need reply_to
    for node in flow:
        for output in node.get("wires", []):
            assert set(output) <= ids, node["id"]
        if node["type"] in ("mqtt in", "mqtt out"):
            assert node["broker"] == broker["id"]
        if node["type"] == "function":
            assert len(node["wires"]) == node["outputs"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_red_functions_follow_a_job() -> None:
    """The function nodes run in node: request -> reply -> progress -> done."""
    flow = json.loads(FLOW.read_text())
    ask = json.loads(next(n for n in flow if n["id"] == "ask")["payload"])
    steps = [
        ["build", {"payload": ask}],
        ["reply", {"payload": {"ok": True, "request_id": "someone-else", "job_id": "x"}}],
        ["reply", "REPLY"],
        ["job", {"payload": {"job_id": "x", "state": "composing", "progress": 0.5}}],
        ["job", {"payload": {"job_id": "j1", "state": "composing", "progress": 0.42}}],
        ["job", {"payload": {"job_id": "j1", "state": "done", "progress": 1.0, "song_id": "s1"}}],
        ["job", {"payload": {"job_id": "j1", "state": "done", "progress": 1.0}}],
    ]
    result = subprocess.run(["node", "-e", HARNESS, str(FLOW)], input=json.dumps(steps),
                            capture_output=True, text=True, check=True, timeout=30)
    out = [value for _, value in json.loads(result.stdout)]
    built = out[0]
    assert built["topic"] == "cassetted/song/create"
    request = SongRequest.model_validate(built["payload"])  # the daemon accepts it as is
    assert request.reply_to == "nodered/cassetted/reply"
    assert request.request_id and request.request_id.startswith("nodered-")
    assert out[1] is None and out[3] is None  # another client's reply and job: ignored
    accepted, refused = out[2]
    assert accepted["job_id"] == "j1" and refused is None
    progress, done = out[4]
    assert progress["payload"]["progress"] == 42 and done is None
    progress, done = out[5]
    assert progress is None and done["payload"]["song_id"] == "s1"
    assert done["request_id"] == request.request_id
    assert out[6] is None  # a finished job is forgotten


def _run_flow(steps: list[list[Any]]) -> list[Any]:
    result = subprocess.run(["node", "-e", HARNESS, str(FLOW)], input=json.dumps(steps),
                            capture_output=True, text=True, check=True, timeout=30)
    return [value for _, value in json.loads(result.stdout)]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_red_shows_queued_though_the_event_comes_before_the_reply() -> None:
    """The daemon publishes a job's `queued` event before its reply; the flow knows the job
    by the event's request_id until the reply names it (it never showed `queued`)."""
    flow = json.loads(FLOW.read_text())
    ask = json.loads(next(n for n in flow if n["id"] == "ask")["payload"])
    out = _run_flow([["build", {"payload": ask}], ["job", "queued"], ["reply", "REPLY"],
                     ["job", "composing"], ["job", "done"], ["job", "composing"]])
    queued, done = out[1]
    assert queued["payload"]["state"] == "queued" and done is None
    accepted, refused = out[2]
    assert accepted["job_id"] == "j1" and refused is None
    assert out[3][0]["payload"]["state"] == "composing"
    assert out[4][1]["payload"]["state"] == "done"
    assert out[4][1]["request_id"] == out[0]["payload"]["request_id"]
    assert out[5] is None  # finished: forgotten

    # A job that ends before its reply arrives: done once, and the reply does not revive it.
    out = _run_flow([["build", {"payload": ask}], ["job", "queued"], ["job", "done"],
                     ["reply", "REPLY"], ["job", "composing"]])
    assert out[2][1]["payload"]["state"] == "done"
    assert out[3][0]["job_id"] == "j1"  # the reply is still passed on
    assert out[4] is None


def _entity_ids(tmp_path: Path) -> set[str]:
    """The entity ids Home Assistant derives: <component>.<slug(device name + entity name)>."""
    settings = Settings(state_dir=tmp_path, rooms={"living_room": {"name": "Living Room"}})
    topics = discovery.Topics("cassetted", "homeassistant")
    ids = set()
    for topic, body in discovery.config_messages(topics, Panel(settings, None).options()):
        config = json.loads(body)
        name = f"{config['device']['name']} {config['name']}".lower()
        slug = "_".join("".join(c if c.isalnum() else " " for c in name).split())
        ids.add(f"{topic.split('/')[1]}.{slug}")
    return ids


def test_dashboard_card_uses_existing_entities(tmp_path: Path) -> None:
    yaml, Loader = _yaml()
    card = yaml.load((EXAMPLES / "homeassistant" / "dashboard-card.yaml").read_text(), Loader)
    known = _entity_ids(tmp_path)
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "entity" and isinstance(value, str):
                    used.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item if not isinstance(item, str) or "." not in item else {"entity": item})
    walk(card)
    assert used and used <= known, used - known
    assert {"text.cassetted_song_prompt", "button.cassetted_generate",
            "sensor.cassetted_progress"} <= used


def test_blueprint_is_an_automation_on_song_ready() -> None:
    yaml, Loader = _yaml()
    blueprint = yaml.load((EXAMPLES / "homeassistant" / "blueprints" / "automation" /
                           "cassetted" / "announce_song_ready.yaml").read_text(), Loader)
    meta = blueprint["blueprint"]
    assert meta["domain"] == "automation"
    inputs = meta["input"]
    assert {"event_topic", "tts_entity", "room_players"} <= set(inputs)
    text = json.dumps(blueprint)
    for used in {v["!input"] for v in _inputs(blueprint)}:
        assert used in inputs
    trigger = blueprint["trigger"][0]
    assert trigger["platform"] == "mqtt" and trigger["topic"] == {"!input": "event_topic"}
    assert "song_ready" in text and "tts.speak" in text


def _inputs(node: Any) -> list[dict[str, str]]:
    if isinstance(node, dict):
        if set(node) == {"!input"}:
            return [node]
        return [i for value in node.values() for i in _inputs(value)]
    if isinstance(node, list):
        return [i for value in node for i in _inputs(value)]
    return []
