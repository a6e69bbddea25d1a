"""A loopback stand-in for ACE-Step 1.5's REST API server, quirks included.

It speaks the real protocol (routes, the `{"data", "code", "error", "timestamp", "extra"}`
wrapper, status integers, `result` as a JSON string, `/v1/audio?path=` files) and behaves
the way the real server does where that differs from what a client would hope. Two
*personalities* pick the upstream version being imitated:

- ``feb``: ``ace-step/ACE-Step-1.5`` at ``f30aee4`` (2026-02-08), ``acestep/api_server.py``;
- ``mar``: upstream ``783bb36`` (2026-03-20, read from the ``erichchampion/ace-step-1.5``
  mirror), the refactored ``acestep/api/**``.

Where each behaviour was read is recorded in ``tests/music/acestep/UPSTREAM.md`` (file and line
at each commit). In short: seeds (feb ignores them; mar seeds take 0 from a single seed and
every take from a comma list), failed results without an ``error`` field and a
``progress_text`` that is the server's last log line, a restart that leaves lost tasks
"running" with frozen progress, silent clamping of duration and batch to a GPU tier (a log
line only), ``/v1/models`` in the OpenRouter format, mar's readiness fields in ``/health``,
429 when the queue is full, and feb's HTTP 500 on every multipart ``/release_task``.

The "model" writes a chord chosen by the take's seed and the caption, so one seed gives the
same file every time and a re-request of a take with its seed gives that take again.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import json
import random
import threading
import time
import urllib.parse
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

import numpy as np
import soundfile

from tests.fixtures.services import LoopbackHTTP

RATE = 48000
Personality = Literal["feb", "mar"]
_RESULT_PREFIX = "ace_step_v1.5_"  # RESULT_KEY_PREFIX, feb api_server.py:232


@dataclass
class Behaviour:
    personality: Personality = "mar"
    key: str | None = None  # required Bearer key (None = open server)
    release_failures: int = 0  # this many 500s on /release_task first
    query_failures: int = 0  # this many 500s on /query_result first
    delay_s: float = 0.0  # every answer waits this long
    queue_polls: int = 0  # polls the task stays queued
    queue_ahead: int = 0  # tasks ahead of it at submission
    avg_job_seconds: float = 1000.0  # what /v1/stats says
    run_polls: int = 2  # polls it stays running (progress rising)
    decode_polls: int = 0  # then polls it stays running with no progress update (the VAE decode)
    fail_reason: str | None = None  # the task fails; the reason goes to the server log only
    local_cache: bool = True  # False: answers come from the job store (the one path with `error`)
    models: list[str] = field(default_factory=lambda: ["acestep-v15-turbo"])
    models_initialized: bool = True  # False: `--no-init`; /health still says "ok"
    llm_initialized: bool = False  # thinking=true fails when False ("5Hz LM init failed")
    max_duration_s: float | None = None  # GPU tier: longer songs are clamped (log line only)
    max_batch: int | None = None  # GPU tier: bigger batches are clamped (log line only)
    queue_maxsize: int = 200  # ACESTEP_QUEUE_MAXSIZE; a full queue answers 429
    busy_s: float = 0.0  # another client keeps the queue full for this long after start
    health_ok: bool = True
    task_timeout_s: float = 3600.0  # TASK_TIMEOUT_SECONDS: a stale "running" turns failed
    lora_files: list[str] = field(default_factory=list)  # adapter paths on the server's disk (mar)
    crash_after_polls: int | None = None  # restart (kill -9) once a task was polled this often running
    crashes: int = 1  # how many times that happens


@dataclass
class Task:
    task_id: str
    params: dict[str, Any]
    files: dict[str, bytes]
    created: float
    polls: int = 0
    state: str = "queued"
    error: str | None = None
    audio_paths: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    lora: tuple[str, float] | None = None  # the adapter active when it rendered (global state)
    caption: str = ""  # final caption and lyrics (the LM's in sample mode)
    lyrics: str = ""
    metas: dict[str, Any] = field(default_factory=dict)


def take_seeds(params: dict[str, Any], batch: int, personality: Personality) -> list[int]:
    """The seed each take is rendered with, as the real server picks them.

    feb: ``GenerationConfig(seeds=None)`` (api_server.py:1529), so ``inference.generate_music``
    hands ``prepare_seeds`` an empty string and every take is random whatever was sent.
    mar: ``_resolve_generation_seeds`` (api/job_generation_setup.py:60-86) keeps an int seed
    or a comma list; ``prepare_seeds`` (core/generation/handler/task_utils.py:19-57) seeds
    take 0 only from a single seed, every take from a list, and -1 or missing entries randomly.
    ``use_random_seed`` defaults to true on both (feb :2172, mar release_task_request_builder.py:58).
    """
    draw = lambda: random.randint(0, 2**32 - 1)  # noqa: E731
    if personality == "feb" or _truthy(params.get("use_random_seed", True)):
        return [draw() for _ in range(batch)]
    raw = params.get("seed", -1)
    if isinstance(raw, (int, float)):
        wanted = [int(raw)] if raw >= 0 else []
    else:
        wanted = []
        for part in str(raw).split(","):
            try:
                wanted.append(int(float(part.strip())))
            except ValueError:
                wanted.append(-1)
    single = len(wanted) == 1 and wanted[0] >= 0
    seeds = []
    for i in range(batch):
        value = wanted[i] if i < len(wanted) else -1
        seeds.append(draw() if value < 0 or (single and i > 0) else value)
    return seeds


def render(seed: int, caption: str, duration_s: float, fmt: str) -> bytes:
    """The stand-in model: a chord picked by (seed, caption)."""
    rng = np.random.default_rng([seed, zlib.crc32(caption.encode())])
    t = np.arange(round(duration_s * RATE)) / RATE
    freqs = 110.0 * 2 ** (rng.integers(0, 24, size=3) / 12)
    mono = sum(np.sin(2 * np.pi * f * t) for f in freqs) / 4
    stereo = np.stack([mono, mono * 0.9], axis=1).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, RATE, format=fmt.upper())
    return buffer.getvalue()


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "y", "on")


class FakeAceStepServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.tasks: dict[str, Task] = {}  # the in-memory job store (lost on restart)
        self.cache: dict[str, str] = {}  # the diskcache (survives a restart)
        self.submitted: list[Task] = []  # every accepted task, restarts included (for tests)
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.files: dict[str, bytes] = {}
        self.log: list[str] = ["INFO | [API Server] started"]
        self.adapters: dict[str, float] = {}  # LoRA registry: name -> scale (server-global)
        self.active_adapter: str | None = None
        self.use_lora = False
        self.started = time.monotonic()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self.http = LoopbackHTTP(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> FakeAceStepServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p.split("?")[0] == path)

    def restart(self) -> None:
        """kill -9 and start again: the job store is gone, the diskcache is not, so a task
        that was running answers status 0 with its last progress until TASK_TIMEOUT_SECONDS
        (feb api_server.py:2351-2375; mar query_result_service.py:30-60, local_cache.py)."""
        with self.lock:
            self._restart_locked()

    def _restart_locked(self) -> None:
        self.tasks.clear()
        self.started = time.monotonic()
        self._say("INFO | [API Server] started")

    def _say(self, line: str) -> None:
        self.log.append(time.strftime("%H:%M:%S") + " | " + line)

    # -- HTTP ----------------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any,
              content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(data)

    @staticmethod
    def _wrap(data: Any, code: int = 200, error: str | None = None) -> dict[str, Any]:
        return {"data": data, "code": code, "error": error, "timestamp": int(time.time() * 1000),
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
        b = self.behaviour
        if method == "GET" and route == "/health":
            data: dict[str, Any] = {"status": "ok" if b.health_ok else "error",
                                    "service": "ACE-Step API", "version": "1.0"}
            if b.personality == "mar":  # model_service_routes.py:119-133
                data.update(models_initialized=b.models_initialized,
                            llm_initialized=b.llm_initialized,
                            loaded_model=b.models[0] if b.models_initialized and b.models else None,
                            loaded_lm_model=None)
            return self._send(handler, 200, self._wrap(data))
        if method == "GET" and route == "/v1/models":
            # The OpenRouter router is mounted first and shadows the server's own route
            # (feb api_server.py:2130 before :2465; mar route_setup.py:69-70); it is unwrapped,
            # lists initialized models only, as "acestep/<name>" (openrouter_adapter.py:591).
            listed = b.models if b.models_initialized else []
            return self._send(handler, 200, {"object": "list", "data": [
                {"id": f"acestep/{name}", "name": f"ACE-Step {name}", "created": 0,
                 "input_modalities": ["text", "audio"], "output_modalities": ["audio", "text"],
                 "context_length": 4096, "max_output_length": 300,
                 "pricing": {"prompt": "0", "completion": "0", "request": "0", "image": "0"},
                 "description": "AI music generation model"} for name in listed]})
        if method == "GET" and route == "/v1/stats":
            if not self._authorised(handler, {}):
                return None
            with self.lock:  # the in-memory job store's counts (feb :701-714, mar jobs/store.py:179-192)
                jobs = {"total": len(self.tasks), "queued": 0, "running": 0, "succeeded": 0, "failed": 0}
                for task in self.tasks.values():
                    jobs[task.state] += 1
            return self._send(handler, 200, self._wrap({
                "jobs": jobs, "queue_size": b.queue_ahead, "queue_maxsize": b.queue_maxsize,
                "avg_job_seconds": b.avg_job_seconds}))
        if method == "POST" and route == "/release_task":
            return self._release(handler, raw)
        if method == "POST" and route == "/v1/chat/completions":
            return self._chat(handler, raw)
        if route.startswith("/v1/lora/") and b.personality == "mar":
            if not self._authorised(handler, {}):
                return None
            return self._lora(handler, method, route, raw)
        if method == "POST" and route == "/query_result":
            return self._query(handler, raw)
        if method == "GET" and route == "/v1/audio":
            if not self._authorised(handler, {}):
                return None
            file_path = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("path", [""])[0]
            data_bytes = self.files.get(file_path)
            if data_bytes is None:
                return self._send(handler, 404, {"detail": "Audio file not found"})
            return self._send(handler, 200, data_bytes, "audio/flac")
        self._send(handler, 404, {"detail": "Not Found"})
        return None

    def _release(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        content_type = (handler.headers.get("Content-Type") or "").lower()
        files: dict[str, bytes] = {}
        b = self.behaviour
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            if b.personality == "feb":
                # feb api_server.py:2152-2207 vs :2243-2259: `_build_request` names
                # reference_audio_path= and src_audio_path= itself and the form branches pass
                # them again as **kwargs, so every multipart or urlencoded request raises
                # TypeError("... got multiple values for keyword argument ...") -> uvicorn's
                # plain-text 500. JSON bodies take the other branch and are fine.
                self._say("ERROR | Exception in ASGI application: TypeError: GenerateMusicRequest() "
                          "got multiple values for keyword argument 'reference_audio_path'")
                return self._send(handler, 500, b"Internal Server Error", "text/plain; charset=utf-8")
            params: dict[str, Any] = {}
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
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
            return None
        with self.lock:
            if b.release_failures > 0:
                b.release_failures -= 1
                return self._send(handler, 500, b"Internal Server Error", "text/plain; charset=utf-8")
            task = Task(str(uuid.uuid4()), params, files, created=time.time())
            # The record is created before the queue check (feb :2303-2310, mar
            # release_task_route.py:68-74): a 429 leaves an orphan record behind.
            pending = sum(1 for t in self.tasks.values() if t.state == "queued")
            busy = time.monotonic() - self.started < b.busy_s
            if busy or pending >= b.queue_maxsize:
                return self._send(handler, 429, {"detail": "Server busy: queue is full"})
            self.tasks[task.task_id] = task
            self.submitted.append(task)
        self._send(handler, 200, self._wrap({"task_id": task.task_id, "status": "queued",
                                             "queue_position": b.queue_ahead + 1}))
        return None

    def _chat(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        """The OpenRouter route (feb openrouter_adapter.py:650-770, the same at mar): no auth,
        audio in as base64 `input_audio` parts (audio[0] -> src_audio for cover/repaint,
        audio[1] -> reference), the whole generation inside one request, and only the first
        take out as a base64 data URL (_build_openrouter_response :423-471); no seeds, no
        progress, inference_steps fixed at 8 (:400)."""
        import base64

        b = self.behaviour
        if not b.models_initialized:
            return self._send(handler, 503, {"detail": "Model not initialized. init_error=None"})
        try:
            body = json.loads(raw or b"{}")
            text = " ".join(part.get("text", "") for m in body["messages"]
                            for part in (m["content"] if isinstance(m["content"], list) else
                                         [{"text": m["content"]}]) if "text" in part)
            audios = [base64.b64decode(part["input_audio"]["data"]) for m in body["messages"]
                      if isinstance(m["content"], list) for part in m["content"]
                      if part.get("type") == "input_audio"]
        except (ValueError, KeyError, TypeError) as error:
            return self._send(handler, 400, {"detail": f"Invalid request format: {error}"})
        config = body.get("audio_config") or {}
        seed = body.get("seed")
        params = {"prompt": text, "lyrics": body.get("lyrics", ""), "bpm": config.get("bpm"),
                  "key_scale": config.get("key_scale", ""),
                  "time_signature": config.get("time_signature", ""),
                  "audio_duration": config.get("duration"), "audio_format": config.get("format", "mp3"),
                  "batch_size": body.get("batch_size") or 1, "seed": -1 if seed is None else seed,
                  "use_random_seed": seed is None, "task_type": body.get("task_type", "text2music"),
                  "thinking": bool(body.get("thinking")), "inference_steps": 8, "via": "chat"}
        names = (["src_audio", "reference_audio"] if params["task_type"] != "text2music"
                 else ["reference_audio"])
        # Only what was uploaded is paired with a name (a take may bring fewer files).
        task = Task(str(uuid.uuid4()), params, dict(zip(names, audios, strict=False)),
                    created=time.time())
        with self.lock:
            self.submitted.append(task)
            reason = self._failure(task)
            if reason:
                self._say(f"ERROR | [API Server] Job {task.task_id} failed: {reason}")
                return self._send(handler, 500, {"detail": reason})
            self._render(task)
            data = self.files[task.audio_paths[0]]
        url = "data:audio/flac;base64," + base64.b64encode(data).decode()
        self._send(handler, 200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "## Metadata\n",
                                                 "audio": [{"type": "audio_url",
                                                            "audio_url": {"url": url}}]},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
        return None

    def _lora(self, handler: BaseHTTPRequestHandler, method: str, route: str, raw: bytes) -> None:
        """mar's LoRA routes (api/http/lora_routes.py:60-150; handler/lora/lifecycle.py and
        controls.py): one server-global registry; load and scale failures differ — load is an
        HTTP 400 with the handler's message as `detail`, toggle and scale answer HTTP 200
        with `code: 400` in the wrapper. feb has none of these routes (404)."""
        body = json.loads(raw or b"{}") if method == "POST" else {}
        with self.lock:
            if route == "/v1/lora/status" and method == "GET":
                return self._send(handler, 200, self._wrap({
                    "lora_loaded": bool(self.adapters), "use_lora": self.use_lora,
                    "lora_scale": self.adapters.get(self.active_adapter or "", 1.0),
                    "adapter_type": "peft" if self.adapters else None, "scales": dict(self.adapters),
                    "active_adapter": self.active_adapter, "adapters": list(self.adapters),
                    "synthetic_default_mode": False}))
            if route == "/v1/lora/load" and method == "POST":
                path, name = body.get("lora_path", ""), (body.get("adapter_name") or "").strip()
                name = name or path.rstrip("/").split("/")[-1]
                if path not in self.behaviour.lora_files:
                    return self._send(handler, 400, {"detail": f"\u274c LoRA path not found: {path}"})
                if name in self.adapters:
                    return self._send(handler, 400, {
                        "detail": f"\u274c Adapter name already in use: {name}. "
                                  "Use a different name or remove it first."})
                self.adapters[name], self.active_adapter, self.use_lora = 1.0, name, True
                return self._send(handler, 200, self._wrap({
                    "message": f"\u2705 LoRA '{name}' loaded from {path}", "lora_path": path,
                    "adapter_name": name}))
            if route == "/v1/lora/unload" and method == "POST":
                if not self.adapters:
                    return self._send(handler, 200,
                                      self._wrap({"message": "\u26a0\ufe0f No LoRA adapter loaded."}))
                self.adapters.clear()
                self.active_adapter, self.use_lora = None, False
                return self._send(handler, 200,
                                  self._wrap({"message": "\u2705 LoRA unloaded, using base model"}))
            if route == "/v1/lora/toggle" and method == "POST":
                if body.get("use_lora") and not self.adapters:
                    return self._send(handler, 200, self._wrap(
                        None, code=400, error="\u274c No LoRA adapter loaded. Please load a LoRA first."))
                self.use_lora = bool(body.get("use_lora"))
                return self._send(handler, 200, self._wrap({"message": "\u2705 LoRA "
                                                            + ("enabled" if self.use_lora else "disabled"),
                                                            "use_lora": self.use_lora}))
            if route == "/v1/lora/scale" and method == "POST":
                name = body.get("adapter_name") or self.active_adapter
                scale = body.get("scale")
                if not isinstance(scale, (int, float)) or not 0 <= scale <= 1:
                    return self._send(handler, 422, {"detail": "scale must be within 0..1"})
                if name not in self.adapters:
                    return self._send(handler, 200, self._wrap(
                        None, code=400, error=f"\u274c Adapter '{name}' not in loaded adapters: "
                                              f"{list(self.adapters)}"))
                self.adapters[name] = float(scale)
                return self._send(handler, 200, self._wrap({
                    "message": f"\u2705 LoRA scale ({name}): {scale:.2f}", "scale": scale,
                    "adapter_name": name}))
        self._send(handler, 404, {"detail": "Not Found"})
        return None

    def _query(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        body = json.loads(raw or b"{}")
        if not self._authorised(handler, body):
            return None
        with self.lock:
            if self.behaviour.query_failures > 0:
                self.behaviour.query_failures -= 1
                return self._send(handler, 500, b"Internal Server Error", "text/plain; charset=utf-8")
        ids = body.get("task_id_list", "[]")
        ids = json.loads(ids) if isinstance(ids, str) else ids
        out = []
        with self.lock:
            for task_id in ids:
                task = self.tasks.get(task_id)
                if task is not None:
                    self._advance(task)
                out.append(self._answer(task_id, self.tasks.get(task_id)))
        self._send(handler, 200, self._wrap(out))
        return None

    def _answer(self, task_id: str, task: Task | None) -> dict[str, Any]:
        """One record of /query_result, the way feb api_server.py:2343-2439 and mar
        query_result_service.py shape it: the diskcache first, then the job store."""
        cached = self.cache.get(_RESULT_PREFIX + task_id) if self.behaviour.local_cache else None
        last_log = self.log[-1]  # log_buffer.last_message: whatever the server logged last
        if cached is not None:
            items = json.loads(cached)
            if not items:
                return {"task_id": task_id, "result": cached, "status": 2}
            status = items[0].get("status")
            if status == 0 and time.time() - items[0].get("create_time", 0) > self.behaviour.task_timeout_s:
                return {"task_id": task_id, "result": cached, "status": 2}
            return {"task_id": task_id, "result": cached,
                    "status": int(status) if status is not None else 1, "progress_text": last_log}
        if task is None:
            return {"task_id": task_id, "result": "[]", "status": 0}
        status = {"queued": 0, "running": 0, "succeeded": 1, "failed": 2}[task.state]
        if task.state == "succeeded":
            items = self._file_items(task, store_path=True)
        else:
            items = [{"file": "", "wave": "", "status": status, "create_time": int(task.created),
                      "env": "development", "prompt": "", "lyrics": "", "metas": {},
                      "progress": 0.0 if task.state == "queued" else self._progress(task),
                      "stage": task.state if task.state != "running" else "inference",
                      "error": task.error}]
        return {"task_id": task_id, "result": json.dumps(items), "status": status,
                "progress_text": last_log if status == 0 else ""}

    def _progress(self, task: Task) -> float:
        running = min(task.polls - self.behaviour.queue_polls, self.behaviour.run_polls)
        return min(1.0, running / (self.behaviour.run_polls + 1))

    def _advance(self, task: Task) -> None:
        b = self.behaviour
        if task.state in ("succeeded", "failed"):
            return
        task.polls += 1
        if task.polls <= b.queue_polls:
            return
        if task.polls - b.queue_polls <= b.run_polls:
            if b.crash_after_polls is not None and b.crashes > 0 \
                    and task.polls - b.queue_polls > b.crash_after_polls:
                b.crashes -= 1
                self._restart_locked()
                return
            if task.state == "queued":
                task.state = "running"
                self._say(f"INFO | [API Server] job {task.task_id} started")
            else:
                self._say("INFO | [tiled_decode] chunk_size=256, overlap=16")
            self._cache(task, [{"file": "", "wave": "", "status": 0, "create_time": int(task.created),
                                "env": "development", "progress": self._progress(task),
                                "stage": "inference"}])
            return
        if task.polls - b.queue_polls <= b.run_polls + b.decode_polls:
            # Progress moves in jumps (feb handler.py:3212-3445): long stretches report nothing.
            self._say("INFO | [tiled_decode] chunk_size=256, overlap=16")
            return
        reason = self._failure(task)
        if reason:
            task.state, task.error = "failed", reason
            self._say(f"ERROR | [API Server] Job {task.task_id} failed: {reason}")
            self._say(f"INFO | [AudioSaver] Saved audio to /tmp/api_audio/{uuid.uuid4()}.flac")
            # local_cache_updates.py:117-125 (mar), api_server.py:1160-1171 (feb): no `error`.
            self._cache(task, [{"file": "", "wave": "", "status": 2, "create_time": int(task.created),
                                "env": "development", "progress": 0.0, "stage": "failed"}])
            return
        self._render(task)
        task.state = "succeeded"
        self._cache(task, self._file_items(task, store_path=False))

    def _failure(self, task: Task) -> str | None:
        b = self.behaviour
        if not b.models_initialized:
            return "Model not initialized"
        wants_lm = _truthy(task.params.get("thinking", False)) or _sample_query(task.params) \
            or _truthy(task.params.get("sample_mode", False))
        if wants_lm and not b.llm_initialized:  # require_llm, feb api_server.py:1347-1361
            return "5Hz LM init failed"
        return b.fail_reason

    def _cache(self, task: Task, items: list[dict[str, Any]]) -> None:
        if self.behaviour.local_cache:
            self.cache[_RESULT_PREFIX + task.task_id] = json.dumps(items)

    def _file_items(self, task: Task, store_path: bool) -> list[dict[str, Any]]:
        p = task.params
        metas = dict(task.metas, duration=task.duration_s)
        items = []
        for path in task.audio_paths:
            item: dict[str, Any] = {
                "file": "/v1/audio?path=" + urllib.parse.quote(path, safe=""), "wave": "",
                "status": 1, "create_time": int(task.created), "env": "development",
                "prompt": task.caption if not store_path else p.get("prompt", ""),
                "lyrics": task.lyrics if not store_path else p.get("lyrics", ""), "metas": metas}
            if not store_path:  # only the cache entry carries seeds (local_cache_updates.py:74-95)
                item.update(generation_info="", seed_value=",".join(str(s) for s in task.seeds),
                            lm_model="", dit_model=self.behaviour.models[0], progress=1.0,
                            stage="succeeded")
            items.append(item)
        return items

    def _render(self, task: Task) -> None:
        """feb inference.py:462-474 (mar likewise per gpu_config tier): duration and batch are
        clamped with a warning in the log and nothing in the answer."""
        b = self.behaviour
        params = task.params
        task.caption, task.lyrics = str(params.get("prompt", "")), str(params.get("lyrics", ""))
        task.metas = {"bpm": _int(params.get("bpm")), "genres": "",
                      "keyscale": params.get("key_scale", ""),
                      "timesignature": params.get("time_signature", "")}
        duration = float(params.get("audio_duration") or 30)
        query = _sample_query(params)
        if query:  # create_sample replaces caption, lyrics and every meta (feb :1383-1415)
            lm = zlib.crc32(query.encode())
            task.caption = f"a gentle acoustic ballad with soft piano, inspired by {query}"
            task.lyrics = f"[verse]\n{query}\nfalling slow\n\n[chorus]\nhush now, hush now"
            task.metas = {"bpm": 60 + lm % 40, "genres": "", "keyscale": "A minor",
                          "timesignature": "3"}
            duration = 12.0 + lm % 5
            self._say("INFO | [create_sample] caption, lyrics and metas from the LM")
        batch = _int(params.get("batch_size")) or 2  # "default to 2 audios" (feb :1523)
        if b.max_duration_s is not None and duration > b.max_duration_s:
            self._say(f"WARNING | [generate_music] Duration {duration}s exceeds GPU limit "
                      f"{b.max_duration_s:g}s. Clamping.")
            duration = b.max_duration_s
        if b.max_batch is not None and batch > b.max_batch:
            self._say(f"WARNING | [generate_music] Batch size {batch} exceeds GPU limit "
                      f"{b.max_batch}. Clamping.")
            batch = b.max_batch
        fmt = params.get("audio_format", "mp3")  # the server's default format is mp3
        fmt = fmt if fmt in ("flac", "wav") else "flac"
        task.seeds = take_seeds(params, batch, b.personality)
        task.duration_s = duration
        if self.use_lora and self.active_adapter:  # whatever is active when the job runs
            task.lora = (self.active_adapter, self.adapters[self.active_adapter])
        for take, seed in enumerate(task.seeds):
            path = f"/tmp/api_audio/{task.task_id}_{take}.{fmt}"
            style = task.caption + (f" <lora {task.lora[0]} {task.lora[1]:.2f}>" if task.lora else "")
            self.files[path] = render(seed, style, duration, fmt)
            task.audio_paths.append(path)
        self._say(f"INFO | [AudioSaver] Saved audio to {task.audio_paths[-1]}")


def _sample_query(params: dict[str, Any]) -> str:
    """`sample_query` and its aliases (PARAM_ALIASES, feb api_server.py:351)."""
    for name in ("sample_query", "sampleQuery", "description", "desc"):
        value = str(params.get(name) or "").strip()
        if value:
            return value
    return ""


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
