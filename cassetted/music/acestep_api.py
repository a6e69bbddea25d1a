"""`acestep_api`: songs from ACE-Step's own REST API server, on one or several GPU boxes.

Protocol (ACE-Step 1.5 `acestep/api_server.py`): every answer is wrapped as
``{"data": ..., "code": 200, "error": null, "timestamp": ms}``; errors are HTTP statuses
with ``{"detail": "..."}`` (401 bad key, 400 bad request, 429 queue full, 5xx).

* ``POST /release_task`` — JSON (or multipart/form-data when audio is uploaded as
  ``src_audio`` / ``reference_audio`` files) -> ``data: {task_id, status: "queued",
  queue_position}``.
* ``POST /query_result`` — ``{"task_id_list": [id]}`` -> ``data: [{task_id, status (0 queued
  or running, 1 succeeded, 2 failed), result: "<JSON string: list of items>", progress_text}]``;
  an item has ``file`` ("/v1/audio?path=..."), ``progress``, ``stage``, ``metas``, ``error``.
* ``GET /v1/audio?path=...`` — the audio file. ``GET /health`` — ``data.status == "ok"``.
* ``GET /v1/stats`` — ``avg_job_seconds`` (used to estimate the queue's movement).
* Key: ``Authorization: Bearer <key>`` (the server's ``ACESTEP_API_KEY``).

A pool of base URLs: each is health-checked (the verdict kept `health_ttl_s`), a task goes
to the next healthy URL in turn, a connection failure, timeout, 5xx or 429 moves it to the
next URL (a task lost by a server that went away mid-song is submitted again elsewhere).
The queue position is shown as progress. The API has no cancel call: a cancelled job stops
polling and leaves the server's task to finish unseen.

Standard library HTTP only. The key comes from the injected `api_key` callable (the
CredentialStore row `keys set acestep_api`), is sent only in the Authorization header of
requests to the pool's own URLs (never across a redirect) and never logged.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cassetted import errors
from cassetted.music import _acestep_audio as shaping
from cassetted.music import _acestep_prompt as prompting
from cassetted.music._acestep_task import MAX_VARIANTS, TEXT2MUSIC, AceStepTask
from cassetted.music.base import Audio, ProgressCallback
from cassetted.schemas import SongSpec

if TYPE_CHECKING:
    from cassetted.credentials import Secret

log = logging.getLogger(__name__)

KeyLookup = Callable[[], "Secret | None"]

# Share of the job's music progress each phase covers.
_QUEUE_END = 0.05
_RUN_END = 0.9


class AceStepApiSettings(BaseModel):
    """`[acestep_api]`: one or more ACE-Step API servers.

    ```toml
    [acestep_api]
    urls = ["http://gpu-box:8001", "http://basement:8001"]
    key_provider = "acestep_api"   # cassetted keys set acestep_api
    ```
    """

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8001"], min_length=1,
                            description="Base URLs of ACE-Step API servers, tried in turn.")
    key_provider: str = Field("acestep_api", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                              description="Credential name of the API key (`cassetted keys set`).")
    model: str | None = Field(None, max_length=128,
                              description='DiT model on the server, e.g. "acestep-v15-turbo".')
    thinking: bool = Field(False, description="Let the server's 5 Hz LM write audio codes first.")
    steps: int | None = Field(None, ge=1, le=200, description="Empty = the server's default.")
    shift: float | None = Field(None, ge=0.1, le=10.0)
    guidance_scale: float | None = Field(None, ge=1.0, le=20.0)
    audio_format: Literal["flac", "wav", "mp3"] = "flac"
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Per HTTP request.")
    task_timeout_s: float = Field(1800.0, gt=0, description="Submit to finished file, queue included.")
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    health_ttl_s: float = Field(30.0, ge=0, description="How long a health verdict is trusted.")
    retries: int = Field(2, ge=0, le=10, description="Retries of one request on the same URL.")
    retry_backoff_s: float = Field(0.5, ge=0, le=30)
    lost_after_s: float = Field(30.0, gt=0, description="A task the server no longer knows "
                                                        "this long is submitted elsewhere.")
    max_variants: int = Field(4, ge=1, le=MAX_VARIANTS)

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        clean = []
        for url in urls:
            if not re.match(r"^https?://[^\s/]+", url):
                raise ValueError(f"{url!r} must start with http:// or https://")
            clean.append(url.rstrip("/"))
        return clean


class RemoteError(errors.GenerationFailed):
    """Every URL of the pool failed; the message says how each one did (never the key)."""


class _Transient(Exception):
    """Worth another try (same URL after a pause, or the next URL)."""


class _Rejected(Exception):
    """The server refused for a reason another server may not share (401, 403, 429, 404)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _BadRequest(Exception):
    """The request itself is wrong (400, 422): no other server will take it either."""


class _Lost(Exception):
    """The server forgot the task (restarted): submit it again elsewhere."""


@dataclass
class _Health:
    healthy: bool
    checked_at: float
    reason: str = ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # never follow: keeps the key home
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _multipart(fields: dict[str, Any], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode())
        out.write(str(value).encode() + b"\r\n")
    for name, (filename, data, content_type) in files.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _wav_bytes(audio: Audio) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, shaping.stereo(audio.samples), audio.sample_rate, format="WAV",
                    subtype="FLOAT")
    return buffer.getvalue()


class AceStepApiEngine:
    """The MusicEngine on a pool of ACE-Step API servers (see the module docstring)."""

    name = "acestep_api"
    tasks = frozenset({"text2music", "cover", "repaint"})
    takes_task = True  # generate(spec, progress, task: AceStepTask)

    def __init__(self, settings: AceStepApiSettings, sample_rate: int,
                 api_key: KeyLookup | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.sample_rate = sample_rate
        self._api_key = api_key or (lambda: None)
        self._clock = clock
        self._sleep = sleep
        self._health: dict[str, _Health] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.last_url: str | None = None
        self.last_task_id: str | None = None

    def __repr__(self) -> str:
        return f"AceStepApiEngine(urls={self.settings.urls!r})"

    # -- public ----------------------------------------------------------------------------

    def generate(self, spec: SongSpec, progress: ProgressCallback,
                 task: AceStepTask | None = None) -> Audio:
        return self.generate_variants(spec, progress, task)[0]

    def generate_variants(self, spec: SongSpec, progress: ProgressCallback,
                          task: AceStepTask | None = None) -> list[Audio]:
        task = task or TEXT2MUSIC
        task.validate(spec.duration_s, self.settings.max_variants, "acestep_api")
        fields, files = self._request_body(spec, task)
        deadline = self._clock() + self.settings.task_timeout_s
        tracker = _Progress(progress)
        failures: list[str] = []
        for url in self._candidates():
            if self._clock() > deadline:
                failures.append("task_timeout_s reached")
                break
            try:
                items = self._run_on(url, fields, files, tracker, deadline)
                return self._fetch(url, items, spec, task.variants, tracker)
            except (_Transient, _Lost) as error:
                self._mark(url, False, str(error))
                failures.append(f"{url}: {error}")
                log.warning("ACE-Step API %s failed (%s); trying the next URL", url, error)
            except _Rejected as error:
                failures.append(f"{url}: {error}")
                log.warning("ACE-Step API %s refused the task (%s)", url, error)
            except _BadRequest as error:
                raise RemoteError(f"ACE-Step API {url} rejected the request: {error}") from None
        raise RemoteError("no ACE-Step API server produced the song: " + "; ".join(failures)
                          if failures else "no ACE-Step API server is reachable")

    def health(self, url: str) -> bool:
        """GET /health now (and remember the verdict)."""
        try:
            body = self._call(url, "GET", "/health", auth=False, retries=0)
            ok = isinstance(body, dict) and (body.get("data") or {}).get("status") == "ok"
            self._mark(url, ok, "" if ok else "health status is not ok")
        except (_Transient, _Rejected, _BadRequest, _Lost) as error:
            self._mark(url, False, str(error))
            ok = False
        return ok

    # -- the pool ----------------------------------------------------------------------------

    def _mark(self, url: str, healthy: bool, reason: str = "") -> None:
        with self._lock:
            self._health[url] = _Health(healthy, self._clock(), reason)

    def _candidates(self) -> list[str]:
        """Every URL once, starting after the one used last (spreads songs over the boxes);
        each is health-checked unless a recent verdict says it is healthy; URLs recently
        found unhealthy go last rather than nowhere (they may be back)."""
        urls = self.settings.urls
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(urls)
        ordered = urls[start:] + urls[:start]
        healthy, doubtful = [], []
        now = self._clock()
        for url in ordered:
            verdict = self._health.get(url)
            fresh = verdict is not None and now - verdict.checked_at < self.settings.health_ttl_s
            if fresh and verdict.healthy:  # type: ignore[union-attr]
                healthy.append(url)
            elif fresh:
                doubtful.append(url)
            elif self.health(url):
                healthy.append(url)
            else:
                doubtful.append(url)
        return healthy + doubtful

    # -- one server --------------------------------------------------------------------------

    def _request_body(self, spec: SongSpec, task: AceStepTask) -> tuple[dict[str, Any], dict[str, tuple[str, bytes, str]]]:
        settings = self.settings
        fields: dict[str, Any] = {
            "prompt": prompting.caption(spec),
            "lyrics": prompting.lyrics(spec),
            "vocal_language": prompting.vocal_language(spec),
            "bpm": spec.bpm,
            "key_scale": prompting.keyscale(spec),
            "time_signature": prompting.time_signature(spec),
            "audio_duration": spec.duration_s,
            "use_random_seed": False,
            "seed": spec.seed,
            "batch_size": task.variants,
            "audio_format": settings.audio_format,
            "thinking": settings.thinking and task.kind == "text2music",
            "use_cot_caption": False,  # the caption is ours: the LM must not rewrite it
            "use_cot_language": False,
            "task_type": task.kind,
        }
        steps = task.steps or settings.steps
        shift = task.shift if task.shift is not None else settings.shift
        guidance = task.guidance_scale if task.guidance_scale is not None else settings.guidance_scale
        for key, value in (("inference_steps", steps), ("shift", shift), ("guidance_scale", guidance),
                           ("model", settings.model)):
            if value is not None:
                fields[key] = value
        files: dict[str, tuple[str, bytes, str]] = {}
        if task.kind == "cover":
            fields["audio_cover_strength"] = task.cover_strength
        if task.kind == "repaint":
            fields["repainting_start"] = task.repaint_start_s
            fields["repainting_end"] = task.repaint_end_s if task.repaint_end_s is not None else -1
        if task.source is not None:
            source = task.source
            if task.kind == "cover" and task.source_bpm and abs(task.source_bpm - spec.bpm) > 0.5:
                stretched = shaping.time_stretch(source.samples, spec.bpm / task.source_bpm)
                source = Audio(stretched, source.sample_rate)
            frames = int(round(spec.duration_s * source.sample_rate))
            source = Audio(shaping.fit_length(shaping.stereo(source.samples), frames,
                                              rate=source.sample_rate), source.sample_rate)
            files["src_audio"] = ("source.wav", _wav_bytes(source), "audio/wav")
        if task.reference is not None:
            files["reference_audio"] = ("reference.wav", _wav_bytes(task.reference), "audio/wav")
        return fields, files

    def _run_on(self, url: str, fields: dict[str, Any], files: dict[str, tuple[str, bytes, str]],
                tracker: "_Progress", deadline: float) -> list[dict[str, Any]]:
        """Submit to one server and poll until its items are ready."""
        if files:
            body, content_type = _multipart(fields, files)
            submitted = self._call(url, "POST", "/release_task", data=body, content_type=content_type)
        else:
            submitted = self._call(url, "POST", "/release_task", json_body=fields)
        data = submitted.get("data") if isinstance(submitted, dict) else None
        if not isinstance(data, dict) or not data.get("task_id"):
            raise _Transient(f"/release_task answered without a task_id: {str(submitted)[:200]}")
        task_id = str(data["task_id"])
        self.last_url, self.last_task_id = url, task_id
        self._mark(url, True)
        host = urllib.parse.urlsplit(url).netloc
        position = _int(data.get("queue_position"))
        queue = _QueueEstimate(position, self._clock(), self._avg_job_seconds(url) if position > 1 else None)
        log.info("ACE-Step task %s on %s, queue position %s", task_id, host, position)
        tracker.queued(queue.position(self._clock()), queue.start, host)
        unknown_since: float | None = None
        try:
            while True:
                if self._clock() > deadline:
                    raise RemoteError(f"ACE-Step task {task_id} on {host} did not finish within "
                                      f"task_timeout_s = {self.settings.task_timeout_s:g} s")
                self._sleep(self.settings.poll_interval_s)
                answer = self._call(url, "POST", "/query_result", json_body={"task_id_list": [task_id]})
                record = _record(answer, task_id)
                status = _int(record.get("status"), 0)
                items = _items(record.get("result"))
                if status == 1:
                    if not items or not any(item.get("file") for item in items):
                        raise _Transient(f"task {task_id} succeeded without an audio file")
                    return items
                if status == 2:
                    reason = next((str(i.get("error")) for i in items if i.get("error")), "") or \
                        str(record.get("progress_text") or "no reason given")
                    raise RemoteError(f"ACE-Step task {task_id} failed on {host}: {reason[:300]}")
                if not items:  # the server does not know the task (restarted?)
                    unknown_since = unknown_since or self._clock()
                    if self._clock() - unknown_since > self.settings.lost_after_s:
                        raise _Lost(f"the server lost task {task_id}")
                    tracker.queued(queue.position(self._clock()), queue.start, host)
                    continue
                unknown_since = None
                item = items[0]
                stage = str(item.get("stage") or "")
                if "queue_position" in item:  # servers that report it while queued
                    queue.observed(_int(item.get("queue_position")), self._clock())
                if stage == "queued" or (stage == "" and _float(item.get("progress")) <= 0):
                    tracker.queued(queue.position(self._clock()), queue.start, host)
                else:
                    tracker.running(_float(item.get("progress")),
                                    str(record.get("progress_text") or stage or "running")[:80])
        except BaseException as error:
            if not isinstance(error, (_Transient, _Lost, RemoteError, _Rejected, _BadRequest)):
                log.info("stopped waiting for ACE-Step task %s on %s (%s); the API cannot cancel it, "
                         "it finishes unseen", task_id, host, type(error).__name__)
            raise

    def _avg_job_seconds(self, url: str) -> float | None:
        try:
            stats = self._call(url, "GET", "/v1/stats", retries=0)
            value = (stats.get("data") or {}).get("avg_job_seconds")
            return float(value) if value else None
        except Exception:  # noqa: BLE001 - the estimate is optional
            return None

    def _fetch(self, url: str, items: list[dict[str, Any]], spec: SongSpec, variants: int,
               tracker: "_Progress") -> list[Audio]:
        import soundfile

        songs = []
        files = [item["file"] for item in items if item.get("file")][:variants]
        for number, file_url in enumerate(files):
            tracker.running(1.0, f"downloading {number + 1}/{len(files)}", download=number / len(files))
            data = self._call(url, "GET", file_url, raw=True)
            try:
                samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
            except Exception as error:  # noqa: BLE001 - any undecodable body
                raise _Transient(f"cannot decode the audio file ({type(error).__name__})") from None
            songs.append(Audio(shaping.to_engine(samples, rate, self.sample_rate, spec.duration_s),
                               self.sample_rate))
        tracker.done()
        if not songs:
            raise _Transient("the finished task has no audio file")
        return songs

    # -- HTTP ----------------------------------------------------------------------------------

    def _call(self, url: str, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
              content_type: str | None = None, auth: bool = True, raw: bool = False,
              retries: int | None = None) -> Any:
        """One request with retries on transient failures; raises the classified error."""
        attempts = 1 + (self.settings.retries if retries is None else retries)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.settings.retry_backoff_s * (2 ** (attempt - 1)))
            try:
                return self._once(url, method, path, json_body, data, content_type, auth, raw)
            except _Transient as error:
                last = error
        assert last is not None
        raise last

    def _once(self, url: str, method: str, path: str, json_body: Any, data: bytes | None,
              content_type: str | None, auth: bool, raw: bool) -> Any:
        target = path if path.startswith(("http://", "https://")) else url + path
        if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
            raise _Transient("the server pointed to a file on another host; not following")
        headers = {"Accept": "application/json" if not raw else "*/*"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(target, data=data, method=method, headers=headers)
        if auth:
            key = self._key()
            if key is not None:
                request.add_unredirected_header("Authorization", f"Bearer {key.reveal()}")
        try:
            with _OPENER.open(request, timeout=self.settings.request_timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            detail = _detail(error)
            if error.code in (401, 403):
                raise _Rejected(f"API key refused ({error.code}: {detail}); set it with "
                                f"`cassetted keys set {self.settings.key_provider}`", error.code) from None
            if error.code == 429:
                raise _Rejected(f"queue full (429: {detail})", 429) from None
            if error.code == 404:
                raise _Rejected(f"{path.split('?')[0]} not found (404): not an ACE-Step 1.5 API "
                                "server?", 404) from None
            if error.code in (400, 415, 422):
                raise _BadRequest(f"{error.code}: {detail}") from None
            raise _Transient(f"HTTP {error.code}: {detail}") from None
        except (socket.timeout, TimeoutError):
            raise _Transient(f"no answer within {self.settings.request_timeout_s:g} s") from None
        except urllib.error.URLError as error:
            raise _Transient(f"cannot connect ({_reason(error)})") from None
        except (ConnectionError, OSError) as error:
            raise _Transient(f"connection failed ({type(error).__name__})") from None
        if raw:
            return body
        try:
            decoded = json.loads(body)
        except ValueError:
            raise _Transient(f"{path.split('?')[0]} answered with something other than JSON") from None
        if isinstance(decoded, dict) and decoded.get("code") not in (None, 200):
            message = str(decoded.get("error") or decoded.get("code"))[:200]
            raise _Transient(f"{path.split('?')[0]} answered code {decoded.get('code')}: {message}")
        return decoded

    def _key(self) -> "Secret | None":
        try:
            return self._api_key()
        except Exception as error:  # noqa: BLE001 - a broken key store must not leak details
            raise RemoteError(f"cannot read the {self.settings.key_provider} API key "
                              f"({type(error).__name__})") from None


# ------------------------------------------------------------------------------ helpers


class _Progress:
    """Monotonic progress for one song across submissions (failover never goes backwards)."""

    def __init__(self, progress: ProgressCallback) -> None:
        self._progress = progress
        self._last = 0.0

    def _emit(self, fraction: float, note: str | None) -> None:
        self._last = max(self._last, min(1.0, fraction))
        self._progress(self._last, note)

    def queued(self, position: int, start_position: int, host: str) -> None:
        if position > 0:
            moved = (start_position - position) / start_position if start_position > 0 else 0.0
            self._emit(_QUEUE_END * moved, f"queued on {host}, position {position}")
        else:
            self._emit(0.0, f"queued on {host}")

    def running(self, server_fraction: float, note: str, download: float | None = None) -> None:
        if download is not None:
            self._emit(_RUN_END + (1.0 - _RUN_END) * 0.9 * download, note)
        else:
            self._emit(_QUEUE_END + (_RUN_END - _QUEUE_END) * max(0.0, min(1.0, server_fraction)), note)

    def done(self) -> None:
        self._emit(1.0, "downloaded")


class _QueueEstimate:
    """Where the task stands in the server's queue: the position given at submission (or a
    later one the server reports), moving on by one per `avg_job_seconds`."""

    def __init__(self, position: int, now: float, avg_job_seconds: float | None) -> None:
        self.start = position
        self._position = position
        self._since = now
        self._avg = avg_job_seconds

    def observed(self, position: int, now: float) -> None:
        self._position, self._since = position, now

    def position(self, now: float) -> int:
        if self._position <= 1 or not self._avg:
            return self._position
        return max(1, self._position - int((now - self._since) / self._avg))


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _record(answer: Any, task_id: str) -> dict[str, Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, list):
        for record in data:
            if isinstance(record, dict) and str(record.get("task_id")) == task_id:
                return record
    raise _Transient(f"/query_result did not mention task {task_id}")


def _items(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, str):
        try:
            result = json.loads(result) if result else []
        except ValueError:
            return []
    if isinstance(result, dict):
        result = [result]
    return [item for item in result if isinstance(item, dict)] if isinstance(result, list) else []


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
        text = body.get("detail") or body.get("error") or error.reason
    except (ValueError, AttributeError, OSError):
        text = error.reason
    return str(text)[:200]


def _reason(error: urllib.error.URLError) -> str:
    reason = error.reason
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(getattr(reason, "strerror", None) or reason)[:120]


def create(settings: Any, credentials: Any = None) -> AceStepApiEngine:
    """Registry factory: the engine from the daemon's Settings (`settings.acestep_api`,
    `settings.generation.sample_rate`); the key is looked up in the CredentialStore on every
    song (household key of `key_provider`), so `keys set` takes effect without a restart."""
    api = settings.acestep_api

    def lookup() -> "Secret | None":
        return credentials.get(api.key_provider) if credentials is not None else None

    return AceStepApiEngine(api, settings.generation.sample_rate, api_key=lookup)
