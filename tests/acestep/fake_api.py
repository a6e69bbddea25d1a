"""A loopback server speaking ACE-Step 1.5's REST API (acestep/api_server.py), with failures.

Same routes, wrapper (`{"data", "code", "error", "timestamp", "extra"}`), status integers,
result-as-JSON-string and `/v1/audio?path=` files as the real server; the "model" writes a
seeded sine chord so a seed gives the same file every time. Knobs make it fail the ways a
GPU box in the basement does: HTTP 500s, slow answers, a queue ahead of the task, a task
that fails, a restart that forgets the task, a wrong key.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import soundfile

RATE = 48000


@dataclass
class Behaviour:
    key: str | None = None  # required Bearer key (None = open server)
    release_failures: int = 0  # this many 500s on /release_task first
    query_failures: int = 0  # this many 500s on /query_result first
    delay_s: float = 0.0  # every answer waits this long
    queue_polls: int = 0  # polls the task stays queued
    queue_ahead: int = 0  # tasks ahead of it at submission
    report_queue_position: bool = False  # put queue_position into queued items (extension)
    run_polls: int = 2  # polls it stays running (progress rising)
    fail_task: str | None = None  # the task fails with this error
    forget_tasks: bool = False  # answers as if restarted: no task is known
    health_ok: bool = True


@dataclass
class Task:
    task_id: str
    params: dict[str, Any]
    files: dict[str, bytes]
    polls: int = 0
    audio_paths: list[str] = field(default_factory=list)


class FakeAceStepServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.tasks: dict[str, Task] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeAceStepServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p.split("?")[0] == path)

    # -- HTTP ----------------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any,
              content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _wrap(data: Any) -> dict[str, Any]:
        return {"data": data, "code": 200, "error": None, "timestamp": int(time.time() * 1000),
                "extra": None}

    def _authorised(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> bool:
        key = self.behaviour.key
        if key is None:
            return True
        header = handler.headers.get("Authorization") or ""
        token = body.get("ai_token") or (header[7:] if header.startswith("Bearer ") else header)
        if token == key:
            return True
        detail = "Invalid API key" if token else "Missing ai_token or Authorization header"
        self._send(handler, 401, {"detail": detail})
        return False

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path
        with self.lock:
            self.requests.append((method, path, dict(handler.headers.items())))
        if self.behaviour.delay_s:
            time.sleep(self.behaviour.delay_s)
        route = urllib.parse.urlsplit(path).path
        if method == "GET" and route == "/health":
            status = "ok" if self.behaviour.health_ok else "error"
            return self._send(handler, 200, self._wrap({"status": status, "service": "ACE-Step API",
                                                        "version": "1.0"}))
        if method == "GET" and route == "/v1/stats":
            if not self._authorised(handler, {}):
                return
            return self._send(handler, 200, self._wrap({"queue_size": self.behaviour.queue_ahead,
                                                        "avg_job_seconds": 1000.0}))
        if method == "POST" and route == "/release_task":
            return self._release(handler, raw)
        if method == "POST" and route == "/query_result":
            return self._query(handler, raw)
        if method == "GET" and route == "/v1/audio":
            if not self._authorised(handler, {}):
                return
            file_path = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("path", [""])[0]
            data = self.files.get(file_path)
            if data is None:
                return self._send(handler, 404, {"detail": "Audio file not found"})
            return self._send(handler, 200, data, "audio/flac")
        self._send(handler, 404, {"detail": "Not Found"})

    def _release(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        content_type = handler.headers.get("Content-Type") or ""
        files: dict[str, bytes] = {}
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            params: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    files[name] = part.get_payload(decode=True)
                else:
                    params[name] = part.get_payload(decode=True).decode()
        else:
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                return self._send(handler, 400, {"detail": "Invalid JSON body"})
            if not isinstance(params, dict):
                return self._send(handler, 400, {"detail": "JSON payload must be an object"})
        if not self._authorised(handler, params):
            return
        with self.lock:
            if self.behaviour.release_failures > 0:
                self.behaviour.release_failures -= 1
                return self._send(handler, 500, {"detail": "Internal Server Error"})
            task = Task(str(uuid.uuid4()), params, files)
            self.tasks[task.task_id] = task
        self._send(handler, 200, self._wrap({"task_id": task.task_id, "status": "queued",
                                             "queue_position": self.behaviour.queue_ahead + 1}))

    def _query(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        body = json.loads(raw or b"{}")
        if not self._authorised(handler, body):
            return
        with self.lock:
            if self.behaviour.query_failures > 0:
                self.behaviour.query_failures -= 1
                return self._send(handler, 500, {"detail": "Internal Server Error"})
        ids = body.get("task_id_list", "[]")
        ids = json.loads(ids) if isinstance(ids, str) else ids
        out = []
        for task_id in ids:
            task = None if self.behaviour.forget_tasks else self.tasks.get(task_id)
            if task is None:
                out.append({"task_id": task_id, "result": "[]", "status": 0})
                continue
            out.append(self._advance(task))
        self._send(handler, 200, self._wrap(out))

    def _advance(self, task: Task) -> dict[str, Any]:
        b = self.behaviour
        task.polls += 1
        base = {"file": "", "wave": "", "create_time": int(time.time()), "env": "test"}
        if task.polls <= b.queue_polls:
            item = dict(base, status=0, progress=0.0, stage="queued", metas={})
            if b.report_queue_position:
                ahead = max(0, b.queue_ahead - (task.polls * b.queue_ahead) // max(1, b.queue_polls))
                item["queue_position"] = ahead + 1
            return {"task_id": task.task_id, "result": json.dumps([item]), "status": 0,
                    "progress_text": ""}
        running = task.polls - b.queue_polls
        if running <= b.run_polls:
            item = dict(base, status=0, progress=running / (b.run_polls + 1), stage="inference")
            return {"task_id": task.task_id, "result": json.dumps([item]), "status": 0,
                    "progress_text": f"step {running}"}
        if b.fail_task:
            item = dict(base, status=2, progress=0.0, stage="failed", error=b.fail_task)
            return {"task_id": task.task_id, "result": json.dumps([item]), "status": 2,
                    "progress_text": b.fail_task}
        if not task.audio_paths:
            task.audio_paths = self._render(task)
        items = [dict(base, file="/v1/audio?path=" + urllib.parse.quote(p, safe=""), status=1,
                      prompt=task.params.get("prompt", ""), lyrics=task.params.get("lyrics", ""),
                      metas={"bpm": task.params.get("bpm"), "duration": task.params.get("audio_duration"),
                             "keyscale": task.params.get("key_scale", ""),
                             "timesignature": task.params.get("time_signature", "")},
                      seed_value=str(task.params.get("seed")), progress=1.0, stage="succeeded")
                 for p in task.audio_paths]
        return {"task_id": task.task_id, "result": json.dumps(items), "status": 1, "progress_text": ""}

    def _render(self, task: Task) -> list[str]:
        params = task.params
        duration = float(params.get("audio_duration") or 30)
        seed = int(params.get("seed") or 0)
        batch = int(params.get("batch_size") or 2)
        fmt = params.get("audio_format", "mp3")
        fmt = fmt if fmt in ("flac", "wav") else "flac"
        paths = []
        for take in range(batch):
            rng = np.random.default_rng(seed + take)
            t = np.arange(int(duration * RATE)) / RATE
            freqs = 110.0 * 2 ** (rng.integers(0, 24, size=3) / 12)
            mono = sum(np.sin(2 * np.pi * f * t) for f in freqs) / 4
            stereo = np.stack([mono, mono * 0.9], axis=1).astype(np.float32)
            buffer = io.BytesIO()
            soundfile.write(buffer, stereo, RATE, format=fmt.upper())
            path = f"/tmp/api_audio/{task.task_id}_{take}.{fmt}"
            self.files[path] = buffer.getvalue()
            paths.append(path)
        return paths


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
