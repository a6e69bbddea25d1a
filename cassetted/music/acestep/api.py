"""`acestep_api`: songs from ACE-Step's own REST API server, on one or several GPU boxes.

Protocol (ACE-Step 1.5 `acestep/api_server.py` at f30aee4, `acestep/api/**` at 783bb36):
every answer is wrapped as ``{"data": ..., "code": 200, "error": null, "timestamp": ms}``;
errors are HTTP statuses with ``{"detail": "..."}`` (401 bad key, 400 bad request, 429
queue full) or a plain-text 500.

* ``POST /release_task`` — JSON (multipart/form-data when audio is uploaded as
  ``src_audio`` / ``reference_audio`` files) -> ``data: {task_id, status, queue_position}``.
* ``POST /query_result`` — ``{"task_id_list": [id]}`` -> ``data: [{task_id, status (0 queued
  or running, 1 succeeded, 2 failed), result: "<JSON string: list of items>", progress_text}]``;
  a finished item has ``file`` ("/v1/audio?path=..."), ``metas`` and ``seed_value`` (the
  seeds actually used, comma-separated, one per file).
* ``GET /v1/audio?path=...`` — the audio file. ``GET /v1/stats`` — ``avg_job_seconds``.
* ``GET /health`` — ``status`` (and, from March 2026, ``models_initialized``,
  ``llm_initialized``); ``GET /v1/models`` — OpenRouter format, ``data[].id`` =
  ``"acestep/<model>"`` for each *loaded* DiT.
* Key: ``Authorization: Bearer <key>`` (the server's ``ACESTEP_API_KEY``).

What the real server does that a client must defend against (details and upstream lines in
`tests/acestep/UPSTREAM.md`): it seeds only take 0 from a single ``seed`` (March) or ignores
seeds (February), so the engine sends the per-take list ``"s,s+1,..."`` and records what
``seed_value`` says was used; a failed task carries no reason and ``progress_text`` is the
server's last log line, so neither is shown as a reason; after a restart a lost task answers
"running" with frozen progress, so a task whose progress stands still for ``stall_after_s``
while ``/v1/stats`` shows the server running no job is submitted again (another server
first, the same one once); the server clamps duration
and batch to its GPU tier and says so only in its log, so the engine measures what came
back, asks again for missing takes, and reports a shorter song as what it is; an unknown
``model`` silently falls back to the primary, so the model is checked against
``/v1/models``; ``/health`` says "ok" with no model loaded, so readiness is checked too.

A pool of base URLs: each is health-checked (the verdict kept `health_ttl_s`), a task goes
to the next healthy URL in turn; a connection failure, timeout, 5xx, failed or lost task
moves it to the next URL; 429 (queue full) everywhere backs off and tries again for up to
`busy_wait_s`. The API has no cancel call: a cancelled job stops polling and leaves the
server's task to finish unseen.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cassetted.contract import errors
from cassetted.contract.schemas import (
    KEY_PATTERN,
    MAX_BPM,
    MAX_DURATION_S,
    MAX_LYRICS_CHARS,
    MIN_BPM,
    MIN_DURATION_S,
    SongSpec,
)
from cassetted.music.acestep import prompt as prompting
from cassetted.music.acestep import shaping
from cassetted.music.acestep.settings import AceStepApiSettings as AceStepApiSettings
from cassetted.music.acestep.settings import RemoteLora as RemoteLora
from cassetted.music.acestep.task import TEXT2MUSIC, AceStepTask
from cassetted.music.base import Audio, NeedsLyrics, ProgressCallback

if TYPE_CHECKING:
    from cassetted.store.credentials import Secret

log = logging.getLogger(__name__)

KeyLookup = Callable[[], "Secret | None"]

# Share of the job's music progress each phase covers.
_QUEUE_END = 0.05
_RUN_END = 0.9
# A file this much shorter than asked is a clamp, not the VAE's rounding (40 ms a frame).
_SHORT_BY_S = 0.25
_BUSY_BACKOFF_CAP_S = 60.0


class RemoteError(errors.GenerationFailed):
    """Every URL of the pool failed; the message says how each one did (never the key)."""


class _Transient(Exception):
    """Worth another try (same URL after a pause, or the next URL)."""


class _Rejected(Exception):
    """The server refused for a reason another server may not share (401, 403, 404, 429,
    a model it has not loaded)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Busy(_Rejected):
    """429: the server's queue is full; it may take the task a little later."""


class _FormsBroken(Exception):
    """The server's /release_task cannot take form data at all (f30aee4: every multipart
    request is a TypeError, api_server.py:2178-2179 vs :2243-2246)."""


class _BadRequest(Exception):
    """The request itself is wrong (400, 422): no other server will take it either."""


class _Lost(Exception):
    """The server forgot the task or stopped working on it (restarted): submit it again."""


class _TaskFailed(Exception):
    """The server ran the task and it failed (status 2); the message says why, as far as
    anything can tell. `lm_suspect`: thinking was on and nothing rules the LM out."""

    def __init__(self, message: str, lm_suspect: bool = False) -> None:
        super().__init__(message)
        self.lm_suspect = lm_suspect


@dataclass
class _Health:
    healthy: bool
    checked_at: float
    reason: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # /health data (readiness fields)
    models: list[str] | None = None  # loaded DiT names from /v1/models (None = unknown)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # never follow: keeps the key home
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)

Files = dict[str, tuple[str, bytes, str]]


def _multipart(fields: dict[str, Any], files: Files) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode())
        out.write(text.encode() + b"\r\n")
    for name, (filename, data, content_type) in files.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _flac_bytes(audio: Audio) -> bytes:
    """Source audio as 24-bit FLAC: lossless for the model's purposes and about a fifth of
    float32 WAV (a 4-minute source is ~20 MB instead of ~92 MB within request_timeout_s)."""
    import soundfile

    buffer = io.BytesIO()
    samples = np.clip(shaping.stereo(audio.samples), -1.0, 1.0)
    soundfile.write(buffer, samples, audio.sample_rate, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


@dataclass
class _Round:
    """One successful server task: its takes (decoded) and the seeds it says it used."""

    url: str
    task_id: str
    takes: list[np.ndarray]
    rate: int
    seeds: list[int] | None
    items: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class AceStepApiEngine:
    """The MusicEngine on a pool of ACE-Step API servers (see the module docstring)."""

    name = "acestep_api"

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
        """Every take asked for, each with the seed that reproduces it; a take the server
        did not render (its GPU tier caps the batch) is asked for again with its own seed;
        a shorter song than asked (its tier caps the duration) comes back as rendered, with
        a note saying so."""
        task = task or TEXT2MUSIC
        task.validate(spec.duration_s, self.settings.max_variants, "acestep_api")
        fields, files = self._request_body(spec, task)
        simple = self.writes_lyrics(spec, task.kind)
        if not simple and self.settings.simple_mode and task.kind == "text2music" \
                and not spec.lyrics and not spec.instrumental:
            raise NeedsLyrics("no ACE-Step server has its 5 Hz LM loaded")  # never lyric-less
        if simple:  # the LM writes caption, lyrics and metas from the description
            for name in ("bpm", "key_scale", "time_signature", "audio_duration"):
                fields.pop(name, None)
            fields.update(prompt="", lyrics="", sample_query=" ".join(spec.prompt.split())
                          or prompting.caption(spec))
        wanted = [(spec.seed + i) % 2**32 for i in range(task.variants)]
        deadline = self._clock() + self.settings.task_timeout_s
        tracker = _Progress(progress)
        notes: list[str] = []
        takes: list[Audio] = []
        rendered: SongSpec | None = None
        while wanted:
            tracker.span(len(takes) / task.variants, (len(takes) + len(wanted)) / task.variants)
            fields.update(seed=",".join(str(s) for s in wanted), batch_size=len(wanted))
            done = self._render(fields, files, tracker, deadline, notes)
            if simple and rendered is None:
                rendered = _written_spec(spec, done.items)
                # Later rounds (a capped batch) render the same song, not a new LM answer.
                fields.pop("sample_query", None)
                fields.update(prompt=rendered.style, lyrics=rendered.lyrics, bpm=rendered.bpm,
                              key_scale=rendered.key,
                              time_signature=prompting.time_signature(rendered),
                              audio_duration=rendered.duration_s)
            takes += self._shape(done, wanted, rendered or spec, notes)
            wanted = wanted[len(done.takes):]
            if wanted:
                host = urllib.parse.urlsplit(done.url).netloc
                note = (f"{host} rendered {len(done.takes)} of the {len(done.takes) + len(wanted)} "
                        "takes asked for at once (its GPU tier caps the batch); asking again "
                        "for the rest")
                log.warning("ACE-Step API: %s", note)
        tracker.done()
        unique = tuple(dict.fromkeys(notes))
        return [Audio(t.samples, t.sample_rate, seed=t.seed, notes=unique, rendered=rendered)
                for t in takes]

    def writes_lyrics(self, spec: SongSpec, kind: str = "text2music") -> bool:
        """Whether this song's lyrics are left to the server's LM (simple mode): only for a
        text2music wish without lyrics, and not when every server is known to have no LM."""
        if not self.settings.simple_mode or kind != "text2music" or spec.lyrics or spec.instrumental:
            return False
        verdicts = [self._health.get(url) for url in self.settings.urls]
        return not all(v is not None and v.facts.get("llm_initialized") is False for v in verdicts)

    def health(self, url: str) -> bool:
        """GET /health now (and remember the verdict): "ok" alone is not enough — a server
        started without its models (`--no-init`, or a failed load) says "ok" too, so
        `models_initialized` (March 2026 servers) and `/v1/models` must agree."""
        try:
            body = self._call(url, "GET", "/health", auth=False, retries=0)
            facts = (body.get("data") or {}) if isinstance(body, dict) else {}
            if not isinstance(facts, dict) or facts.get("status") != "ok":
                self._mark(url, False, "health status is not ok")
                return False
            if facts.get("models_initialized") is False:
                self._mark(url, False, "its models are not loaded (models_initialized = false)", facts)
                return False
            models = self._models(url)
            if models == []:
                self._mark(url, False, "it has no model loaded (/v1/models is empty)", facts)
                return False
            self._mark(url, True, "", facts, models)
            return True
        except (_Transient, _Rejected, _BadRequest, _Lost) as error:
            self._mark(url, False, str(error))
            return False

    # -- the pool ----------------------------------------------------------------------------

    def _mark(self, url: str, healthy: bool, reason: str = "", facts: dict[str, Any] | None = None,
              models: list[str] | None = None) -> None:
        with self._lock:
            old = self._health.get(url)
            self._health[url] = _Health(
                healthy, self._clock(), reason,
                facts if facts is not None else (old.facts if old else {}),
                models if models is not None else (old.models if old else None))

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

    def _render(self, fields: dict[str, Any], files: Files, tracker: _Progress,
                deadline: float, notes: list[str]) -> _Round:
        """One task run to its files somewhere in the pool: failover on failures, another
        submission for a lost or stalled task (elsewhere first, the same server once), and
        patience while every queue is full."""
        failures: list[str] = []
        lm_missing = False
        busy_since: float | None = None
        backoff = self.settings.busy_backoff_s
        while True:
            pending = self._candidates()
            again: set[str] = set()
            all_busy = True
            while pending:
                url = pending.pop(0)
                if self._clock() > deadline:
                    failures.append("task_timeout_s reached")
                    pending = []
                    all_busy = False
                    break
                host = urllib.parse.urlsplit(url).netloc
                try:
                    self._check_model(url, host)
                    self._apply_lora(url, host)
                    return self._run_on(url, host, fields, files, tracker, deadline)
                except _Busy as error:
                    failures.append(f"{host}: {error}")
                    log.warning("ACE-Step API %s is busy (%s)", host, error)
                    continue
                except _Lost as error:
                    self._mark(url, False, str(error))
                    failures.append(f"{host}: {error}")
                    if not pending and url not in again:  # no one else left: the same one, once
                        again.add(url)
                        pending.append(url)
                    log.warning("ACE-Step API %s: %s; submitting it again", host, error)
                except _Transient as error:
                    self._mark(url, False, str(error))
                    failures.append(f"{host}: {error}")
                    log.warning("ACE-Step API %s failed (%s); trying the next URL", host, error)
                except _TaskFailed as error:
                    failures.append(f"{host}: {error}")
                    log.warning("ACE-Step API %s: %s", host, error)
                    if error.lm_suspect and fields.get("sample_query"):
                        lm_missing = True
                    elif error.lm_suspect and fields.get("thinking"):
                        # The LM path is the fragile one (upstream #613, #616, #135): the same
                        # song without thinking, on the same server first.
                        fields["thinking"] = False
                        notes.append(f"{host} failed with thinking on; rendered without thinking")
                        pending.insert(0, url)
                except _Rejected as error:
                    failures.append(f"{host}: {error}")
                    log.warning("ACE-Step API %s: %s", host, error)
                except _BadRequest as error:
                    raise RemoteError(f"ACE-Step API {host} rejected the request: {error}") from None
                all_busy = False
            now = self._clock()
            busy_since = busy_since if busy_since is not None else now
            if not (all_busy and failures) or now - busy_since + backoff > self.settings.busy_wait_s \
                    or now + backoff > deadline:
                break
            tracker.note(f"every ACE-Step server is busy (queue full); trying again in {backoff:g} s")
            self._sleep(backoff)
            backoff = min(backoff * 2, _BUSY_BACKOFF_CAP_S)
            failures = []
        summary = "; ".join(dict.fromkeys(failures))
        if lm_missing:
            raise NeedsLyrics(f"no ACE-Step server could write the song from its description: {summary}")
        if all_busy and failures:
            raise RemoteError(f"every ACE-Step API server's queue stayed full for "
                              f"{self.settings.busy_wait_s:g} s (busy_wait_s): {summary}")
        raise RemoteError("no ACE-Step API server produced the song: " + summary
                          if failures else "no ACE-Step API server is reachable")

    def _check_model(self, url: str, host: str) -> None:
        """The server silently renders with its primary model when asked for one it has not
        loaded (feb api_server.py:1234-1241): ask /v1/models first."""
        wanted = self.settings.model_name
        if wanted is None:
            return
        verdict = self._health.get(url)
        models = verdict.models if verdict is not None else None
        if models is None:
            models = self._models(url)
            if models is not None:
                self._mark(url, verdict.healthy if verdict else True, "", None, models)
        if models is not None and wanted not in models:
            have = ", ".join(models) or "none"
            raise _Rejected(f"model {wanted!r} is not loaded there (it has: {have}; "
                            "[acestep_api] model takes a name /v1/models lists)", 404)

    def _apply_lora(self, url: str, host: str) -> None:
        """Make the server's (global) adapter state the configured LoRA at its scale, via
        783bb36's /v1/lora/status|load|unload|scale|toggle (api/http/lora_routes.py); a
        server without those routes cannot render the song as configured."""
        name = self.settings.lora
        if name is None:
            return
        want = self.settings.loras[name]
        try:
            status = (self._call(url, "GET", "/v1/lora/status", retries=0).get("data") or {})
            if status.get("active_adapter") != name:
                if name in (status.get("adapters") or []):  # loaded but not active: no route
                    self._call(url, "POST", "/v1/lora/unload", json_body={}, retries=0)  # to switch
                self._call(url, "POST", "/v1/lora/load", retries=0,
                           json_body={"lora_path": want.path, "adapter_name": name})
            scales = status.get("scales") or {}
            if status.get("active_adapter") != name or scales.get(name) != want.scale:
                self._call(url, "POST", "/v1/lora/scale", retries=0,
                           json_body={"scale": want.scale, "adapter_name": name})
            if not status.get("use_lora") or status.get("active_adapter") != name:
                self._call(url, "POST", "/v1/lora/toggle", json_body={"use_lora": True}, retries=0)
        except _Rejected as error:
            if error.status == 404:
                raise _Rejected(f"it cannot apply LoRA {name!r}: it has no LoRA API (ACE-Step API "
                                "783bb36, March 2026, or later has /v1/lora/*)", 404) from None
            raise
        except (_BadRequest, _Transient) as error:
            raise _Rejected(f"it could not apply LoRA {name!r} from {want.path}: "
                            f"{_plain(str(error))}", 400) from None
        log.info("ACE-Step API %s: LoRA %s at scale %.2f", host, name, want.scale)

    def _models(self, url: str) -> list[str] | None:
        """Loaded DiT names from /v1/models (OpenRouter format, "acestep/<name>"); None when
        the server has no such route or answers something else."""
        try:
            body = self._call(url, "GET", "/v1/models", retries=0)
        except (_Transient, _Rejected, _BadRequest):
            return None
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict):  # the server's own route shape, should it ever win
            data = data.get("models")
        if not isinstance(data, list):
            return None
        names = []
        for entry in data:
            name = entry.get("id") or entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name:
                names.append(name.split("/", 1)[1] if name.startswith("acestep/") else name)
        return names

    # -- one server --------------------------------------------------------------------------

    def _request_body(self, spec: SongSpec, task: AceStepTask) -> tuple[dict[str, Any], Files]:
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
            "seed": str(spec.seed),  # replaced by the per-take list for each submission
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
        fields.update({key: value for key, value in (("inference_steps", steps), ("shift", shift),
                                                     ("guidance_scale", guidance),
                                                     ("model", settings.model_name))
                       if value is not None})
        files: Files = {}
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
            frames = round(spec.duration_s * source.sample_rate)
            source = Audio(shaping.fit_length(shaping.stereo(source.samples), frames,
                                              rate=source.sample_rate), source.sample_rate)
            files["src_audio"] = ("source.flac", _flac_bytes(source), "audio/flac")
        if task.reference is not None:
            files["reference_audio"] = ("reference.flac", _flac_bytes(task.reference), "audio/flac")
        return fields, files

    def _submit(self, url: str, host: str, fields: dict[str, Any], files: Files) -> Any:
        if not files:
            return self._call(url, "POST", "/release_task", json_body=fields)
        body, content_type = _multipart(fields, files)
        try:
            return self._call(url, "POST", "/release_task", data=body, content_type=content_type)
        except _Transient as error:
            if "HTTP 500" not in str(error):
                raise
            verdict = self._health.get(url)
            if verdict is None or not verdict.facts:  # which server is it? /health tells
                self.health(url)
                verdict = self._health.get(url)
            if verdict is not None and _before_march(verdict.facts):
                raise _FormsBroken() from None
            raise

    def _run_on(self, url: str, host: str, fields: dict[str, Any], files: Files,
                tracker: _Progress, deadline: float) -> _Round:
        """Submit to one server, poll until its files are ready, download them."""
        notes: list[str] = []
        facts = self._health[url].facts if url in self._health else {}
        if fields.get("sample_query") and facts.get("llm_initialized") is False:
            raise _TaskFailed(f"{host} has no 5 Hz LM loaded to write the song", lm_suspect=True)
        if fields.get("thinking") and facts.get("llm_initialized") is False:
            fields = dict(fields, thinking=False)
            notes.append(f"{host} has no 5 Hz LM loaded: rendered without thinking")
        facts_known = self._health.get(url)
        if files and facts_known is not None and _before_march(facts_known.facts):
            return self._run_chat(url, host, fields, files, tracker, deadline, notes)
        try:
            submitted = self._submit(url, host, fields, files)
        except _FormsBroken:
            return self._run_chat(url, host, fields, files, tracker, deadline, notes)
        data = submitted.get("data") if isinstance(submitted, dict) else None
        if not isinstance(data, dict) or not data.get("task_id"):
            raise _Transient(f"/release_task answered without a task_id: {str(submitted)[:200]}")
        task_id = str(data["task_id"])
        self.last_url, self.last_task_id = url, task_id
        position = _int(data.get("queue_position"))
        queue = _QueueEstimate(position, self._clock(), self._avg_job_seconds(url) if position > 1 else None)
        log.info("ACE-Step task %s on %s, queue position %s", task_id, host, position)
        tracker.queued(queue.position(self._clock()), queue.start, host)
        watch = _StallWatch(self._clock(), self.settings.stall_after_s, self.settings.lost_after_s)
        baseline: dict[str, int] | None = None  # the server's job counts once the task ran
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
                    if not any(item.get("file") for item in items):
                        raise _Transient(f"task {task_id} succeeded without an audio file")
                    self._mark(url, True)
                    done = self._fetch(url, task_id, items, tracker)
                    done.notes.extend(notes)
                    return done
                if status == 2:
                    raise self._why_failed(url, host, task_id, items, fields)
                now = self._clock()
                if not items:  # the server does not know the task (restarted before it ran)
                    if watch.unknown(now):
                        raise _Lost(f"the server no longer knows task {task_id}")
                    tracker.queued(queue.position(now), queue.start, host)
                    continue
                item = items[0]
                stage = str(item.get("stage") or "")
                fraction = _float(item.get("progress"))
                if stage == "queued" or (stage == "" and fraction <= 0):
                    watch.seen(("queued",), now)
                    tracker.queued(queue.position(now), queue.start, host)
                    continue
                if baseline is None:
                    baseline = self._job_stats(url) or {}
                if watch.stalled((stage, fraction), now):
                    if self._still_working(url, baseline):
                        # Upstream's progress jumps (0.52 during the DiT, 0.8 during the VAE
                        # decode): a long step with no report; task_timeout_s bounds it.
                        watch.seen(("working", now), now)
                        tracker.running(fraction, f"rendering on {host} (still working)")
                        continue
                    raise _Lost(f"task {task_id} made no progress for "
                                f"{self.settings.stall_after_s:g} s (stuck at {fraction:.0%}) and "
                                "the server is working on nothing: it restarted and lost the task")
                # progress_text is the server's last log line, about anything: not shown.
                tracker.running(fraction, f"rendering on {host}")
        except BaseException as error:
            if not isinstance(error, (_Transient, _Lost, RemoteError, _Rejected, _BadRequest,
                                      _TaskFailed)):
                log.info("stopped waiting for ACE-Step task %s on %s (%s); the API cannot cancel it, "
                         "it finishes unseen", task_id, host, type(error).__name__)
            raise

    def _run_chat(self, url: str, host: str, fields: dict[str, Any], files: Files,
                  tracker: _Progress, deadline: float, notes: list[str]) -> _Round:
        """Uploads to a February server through its OpenRouter route, the one place it takes
        audio (`input_audio` parts, openrouter_adapter.py:199-318 and :650-770 at f30aee4).
        That route renders inside the request, reports no progress or seeds, returns only
        the first take and fixes the steps at 8: one request per take, the rest noted."""
        import base64

        content: list[dict[str, Any]] = [{"type": "text", "text": fields["prompt"]}]
        content.extend({"type": "input_audio", "input_audio": {
                            "data": base64.b64encode(files[name][1]).decode(), "format": "flac"}}
                        for name in ("src_audio", "reference_audio")  # audio[0] src, [1] reference
                        if name in files)
        verdict = self._health.get(url)
        model = fields.get("model") or (next(iter(verdict.models or []), None) if verdict else None)
        seeds = [int(part) for part in str(fields["seed"]).split(",")]
        takes: list[np.ndarray] = []
        for number, seed in enumerate(seeds):
            left = deadline - self._clock()
            if left <= 0:
                raise RemoteError(f"ACE-Step upload to {host} did not finish within "
                                  f"task_timeout_s = {self.settings.task_timeout_s:g} s")
            tracker.running(number / len(seeds), f"rendering on {host} (no progress on this route)")
            body = {
                "model": f"acestep/{model or 'acestep-v15-turbo'}", "stream": False,
                "messages": [{"role": "user", "content": content}],
                "lyrics": fields["lyrics"], "task_type": fields["task_type"], "seed": seed,
                "batch_size": 1, "thinking": bool(fields.get("thinking")),
                "use_cot_caption": False, "use_cot_language": False,
                "audio_cover_strength": fields.get("audio_cover_strength", 1.0),
                "repainting_start": fields.get("repainting_start", 0.0),
                "repainting_end": fields.get("repainting_end"),
                "audio_config": {"duration": fields["audio_duration"], "bpm": fields["bpm"],
                                 "key_scale": fields["key_scale"],
                                 "time_signature": fields["time_signature"],
                                 "vocal_language": fields["vocal_language"], "format": "flac"}}
            try:
                answer = self._call(url, "POST", "/v1/chat/completions", json_body=body,
                                    retries=0, timeout=left)
            except _Transient as error:
                if "HTTP 500" in str(error):  # the route's failure: its `detail` is the reason
                    detail = str(error).split(":", 1)[-1]
                    raise _TaskFailed(f"upload to {host} failed: {explain(detail)}",
                                      bool(fields.get("thinking")) and "LM" in explain(detail)) from None
                raise
            takes.append(self._chat_audio(answer, host))
        notes.append(f"{host} (ACE-Step API before March 2026) took the source audio only "
                     "through its OpenRouter route: no progress, seeds or step settings there")
        return _Round(url, "chat", takes, self.sample_rate, None, [], notes)

    def _chat_audio(self, answer: Any, host: str) -> np.ndarray:
        import base64

        import soundfile

        try:
            url = answer["choices"][0]["message"]["audio"][0]["audio_url"]["url"]
            data = base64.b64decode(url.split(",", 1)[1])
            samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise _Transient(f"{host} answered the upload without audio ({type(error).__name__})") from None
        return shaping.resample(shaping.stereo(samples), rate, self.sample_rate)

    def _why_failed(self, url: str, host: str, task_id: str, items: list[dict[str, Any]],
                    fields: dict[str, Any]) -> _TaskFailed:
        """A reason for a status-2 task. The diskcache answer carries none and progress_text
        is an unrelated log line, so: the job store's `error` when it is there, else what the
        server's readiness says, else that the server gave none."""
        head = f"task {task_id} failed on {host} (status 2)"
        thinking = bool(fields.get("thinking") or fields.get("sample_query"))
        error = next((str(i["error"]) for i in items if i.get("error")), "")
        if error:
            words = explain(error)
            return _TaskFailed(f"{head}: {words}", thinking and "LM" in words)
        self.health(url)
        verdict = self._health.get(url)
        facts = verdict.facts if verdict is not None else {}
        if facts.get("models_initialized") is False or (verdict is not None and verdict.models == []):
            return _TaskFailed(f"{head}: the server's model is not loaded")
        if thinking and facts.get("llm_initialized") is False:
            return _TaskFailed(f"{head}: {explain('5Hz LM init failed')}", True)
        return _TaskFailed(f"{head}: the server gave no reason (its log has it)", thinking)

    def _job_stats(self, url: str) -> dict[str, int] | None:
        """/v1/stats `jobs`: the in-memory job store's counts (a restart empties it)."""
        try:
            stats = self._call(url, "GET", "/v1/stats", retries=0)
        except (_Transient, _Rejected, _BadRequest):
            return None
        jobs = (stats.get("data") or {}).get("jobs") if isinstance(stats, dict) else None
        if not isinstance(jobs, dict):
            return None
        return {name: _int(jobs.get(name)) for name in ("total", "running")}

    def _still_working(self, url: str, baseline: dict[str, int]) -> bool:
        """After a stall: is the server still running a job (ours, in a step without progress
        reports)? Not if it runs none, nor if its job store shrank (it restarted)."""
        now = self._job_stats(url)
        if now is None or now["running"] < 1:
            return False
        return not baseline or now["total"] >= baseline.get("total", 0)

    def _avg_job_seconds(self, url: str) -> float | None:
        try:
            stats = self._call(url, "GET", "/v1/stats", retries=0)
            value = (stats.get("data") or {}).get("avg_job_seconds")
            return float(value) if value else None
        except Exception:  # noqa: BLE001 - the estimate is optional
            return None

    def _fetch(self, url: str, task_id: str, items: list[dict[str, Any]],
               tracker: _Progress) -> _Round:
        import soundfile

        files = [item["file"] for item in items if item.get("file")]
        takes: list[np.ndarray] = []
        rate = self.sample_rate
        for number, file_url in enumerate(files):
            tracker.running(1.0, f"downloading {number + 1}/{len(files)}", download=number / len(files))
            data = self._call(url, "GET", file_url, raw=True)
            try:
                samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
            except Exception as error:  # noqa: BLE001 - any undecodable body
                raise _Transient(f"cannot decode the audio file ({type(error).__name__})") from None
            takes.append(shaping.resample(shaping.stereo(samples), rate, self.sample_rate))
        seeds = _seeds(items, len(takes))
        return _Round(url, task_id, takes, self.sample_rate, seeds, items)

    def _shape(self, done: _Round, asked: list[int], spec: SongSpec, notes: list[str]) -> list[Audio]:
        """The engine's takes from one round: exact length when the server rendered what was
        asked, the rendered length (never silence-padded) when it clamped; the seed each
        take was rendered with as the server reports it."""
        host = urllib.parse.urlsplit(done.url).netloc
        frames = round(spec.duration_s * self.sample_rate)
        seeds = done.seeds
        if seeds is None:
            notes.append(f"{host} did not report the seeds it used; the requested ones are recorded")
            seeds = asked[:len(done.takes)]
        elif seeds != asked[:len(seeds)]:
            notes.append(f"{host} did not use the requested seeds (ACE-Step API servers before "
                         "March 2026 ignore them); the seeds it used are recorded")
        notes.extend(done.notes)
        out = []
        # A server may report more or fewer seeds than takes: pair what there is (strict=False).
        for rendered, seed in zip(done.takes[:len(asked)], seeds, strict=False):
            have = rendered.shape[0]
            samples = rendered
            if have < frames - _SHORT_BY_S * self.sample_rate:
                notes.append(f"{host} rendered {have / self.sample_rate:.1f} s of the "
                             f"{spec.duration_s:g} s asked (its GPU tier caps the duration)")
            else:
                samples = shaping.fit_length(rendered, frames, rate=self.sample_rate)
            np.clip(samples, -1.0, 1.0, out=samples)
            out.append(Audio(np.ascontiguousarray(samples, dtype=np.float32), self.sample_rate,
                             seed=seed % 2**32))
        return out

    # -- HTTP ----------------------------------------------------------------------------------

    def _call(self, url: str, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
              content_type: str | None = None, auth: bool = True, raw: bool = False,
              retries: int | None = None, timeout: float | None = None) -> Any:
        """One request with retries on transient failures; raises the classified error."""
        attempts = 1 + (self.settings.retries if retries is None else retries)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.settings.retry_backoff_s * (2 ** (attempt - 1)))
            try:
                return self._once(url, method, path, json_body, data, content_type, auth, raw,
                                  timeout or self.settings.request_timeout_s)
            except _Transient as error:
                last = error
        assert last is not None
        raise last

    def _once(self, url: str, method: str, path: str, json_body: Any, data: bytes | None,
              content_type: str | None, auth: bool, raw: bool, timeout: float) -> Any:
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
            with _OPENER.open(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            detail = _detail(error)
            if error.code in (401, 403):
                raise _Rejected(f"API key refused ({error.code}: {detail}); set it with "
                                f"`cassetted keys set {self.settings.key_provider}`", error.code) from None
            if error.code == 429:
                raise _Busy(f"queue full (429: {detail})", 429) from None
            if error.code == 404:
                raise _Rejected(f"{path.split('?')[0]} not found (404): not an ACE-Step 1.5 API "
                                "server?", 404) from None
            if error.code in (400, 415, 422):
                raise _BadRequest(f"{error.code}: {detail}") from None
            if error.code == 503:
                raise _Transient(f"HTTP 503: {explain(detail)}") from None
            raise _Transient(f"HTTP {error.code}: {detail}") from None
        except TimeoutError:
            raise _Transient(f"no answer within {timeout:g} s") from None
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

    def _key(self) -> Secret | None:
        try:
            return self._api_key()
        except Exception as error:  # noqa: BLE001 - a broken key store must not leak details
            raise RemoteError(f"cannot read the {self.settings.key_provider} API key "
                              f"({type(error).__name__})") from None


# ------------------------------------------------------------------------------ helpers

_KNOWN_FAILURES: tuple[tuple[str, str], ...] = (
    (r"out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED",
     "the server's GPU ran out of memory (ask for a shorter song or fewer variants)"),
    (r"LM init failed|LLM not initialized|LLM init failed|5Hz LM",
     ("the server's 5 Hz LM is not loaded (set [acestep_api] thinking = false, or start the "
      "server with its LM)")),
    (r"Model not initialized|models? not (loaded|initialized)|init_error",
     "the server's model is not loaded"),
    (r"queue is full|Server busy", "the server's queue is full"),
)


def _plain(text: str) -> str:
    """A server message without its status emoji (upstream prefixes them: ✅ ⚠️ ❌)."""
    return re.sub(r"[\u2705\u274c\u26a0\ufe0f]\s*", "", text).strip()[:200]


def explain(reason: str) -> str:
    """A server-side error in words a household understands (the original kept, trimmed,
    when it is none of the known cases)."""
    for pattern, words in _KNOWN_FAILURES:
        if re.search(pattern, reason, re.IGNORECASE):
            return words
    return reason.strip()[:200] or "no reason given"


class _StallWatch:
    """When a task stopped moving: progress frozen while "running" (a restarted server
    answers that from its diskcache for an hour), or the task unknown altogether."""

    def __init__(self, now: float, stall_after_s: float, lost_after_s: float) -> None:
        self._state: tuple[Any, ...] | None = None
        self._since = now
        self._unknown_since: float | None = None
        self._stall_after_s = stall_after_s
        self._lost_after_s = lost_after_s

    def seen(self, state: tuple[Any, ...], now: float) -> None:
        self._unknown_since = None
        if state != self._state:
            self._state, self._since = state, now

    def stalled(self, state: tuple[Any, ...], now: float) -> bool:
        self.seen(state, now)
        return now - self._since > self._stall_after_s

    def unknown(self, now: float) -> bool:
        self._unknown_since = self._unknown_since if self._unknown_since is not None else now
        return now - self._unknown_since > self._lost_after_s


class _Progress:
    """Monotonic progress for one song across submissions (failover never goes backwards);
    `span` maps a round of takes onto its share of the whole."""

    def __init__(self, progress: ProgressCallback) -> None:
        self._progress = progress
        self._last = 0.0
        self._lo, self._hi = 0.0, 1.0

    def span(self, lo: float, hi: float) -> None:
        self._lo, self._hi = lo, hi

    def _emit(self, fraction: float, note: str | None) -> None:
        overall = self._lo + (self._hi - self._lo) * min(1.0, fraction)
        self._last = max(self._last, min(1.0, overall))
        self._progress(self._last, note)

    def note(self, note: str) -> None:
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
        self._lo, self._hi = 0.0, 1.0
        self._emit(1.0, "downloaded")


class _QueueEstimate:
    """Where the task stands in the server's queue: the position given at submission,
    moving on by one per `avg_job_seconds` (the server never reports it while polling)."""

    def __init__(self, position: int, now: float, avg_job_seconds: float | None) -> None:
        self.start = position
        self._position = position
        self._since = now
        self._avg = avg_job_seconds

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


def _seeds(items: list[dict[str, Any]], takes: int) -> list[int] | None:
    """The seeds the server used, one per file: `seed_value` is "s0,s1,..." on every item
    (feb api_server.py:1728-1734, mar job_result_payload.py:34-41); None when absent or
    not one per take (the job-store answer carries none)."""
    raw = next((str(i["seed_value"]) for i in items if i.get("seed_value") not in (None, "")), "")
    try:
        seeds = [int(float(part)) for part in raw.split(",") if part.strip()]
    except ValueError:
        return None
    return seeds if len(seeds) == takes and takes else None


def _before_march(facts: dict[str, Any]) -> bool:
    """A /health answer from an ACE-Step API server before the March 2026 refactor (it has
    `status` but none of the readiness fields model_service_routes.py:119-133 adds)."""
    return bool(facts) and "status" in facts and "models_initialized" not in facts


_BEATS = {"2": "2/4", "3": "3/4", "4": "4/4", "6": "6/8"}


def _written_spec(spec: SongSpec, items: list[dict[str, Any]]) -> SongSpec:
    """The spec as the server's LM wrote it in simple mode: the item's `prompt` (final
    caption) and `lyrics`, and `metas` bpm/keyscale/timesignature/duration (feb
    api_server.py:1383-1415 and :1763-1768; mar job_result_payload.py:62-110). Values
    outside what a SongSpec allows keep the spec's own."""
    item = next((i for i in items if i.get("file")), items[0] if items else {})
    raw_metas = item.get("metas")
    metas: dict[str, Any] = raw_metas if isinstance(raw_metas, dict) else {}
    update: dict[str, Any] = {}
    lyrics = str(item.get("lyrics") or "").strip()
    if lyrics:
        update["lyrics"] = lyrics[:MAX_LYRICS_CHARS]
    caption = " ".join(str(item.get("prompt") or "").split())
    if caption:
        update["style"] = caption
    bpm = _int(metas.get("bpm"))
    if MIN_BPM <= bpm <= MAX_BPM:
        update["bpm"] = bpm
    key = " ".join(str(metas.get("keyscale") or "").split())
    if re.match(KEY_PATTERN, key):
        update["key"] = key
    beats = str(metas.get("timesignature") or "").split("/")[0].strip()
    if beats in _BEATS:
        update["time_signature"] = _BEATS[beats]
    duration = _float(metas.get("duration"))
    if MIN_DURATION_S <= duration <= MAX_DURATION_S:
        update["duration_s"] = duration
    return spec.model_copy(update=update)


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

    def lookup() -> Secret | None:
        return credentials.get(api.key_provider) if credentials is not None else None

    return AceStepApiEngine(api, settings.generation.sample_rate, api_key=lookup)
