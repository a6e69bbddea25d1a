"""What the daemon and its workers say to each other over NATS JetStream, in one place.

Everything is named from `[cluster] prefix` (default `cassetted`):

- stream `<prefix>-jobs`, subjects `<prefix>.jobs.<engine>` (work queue): one JobMessage per
  dispatch. One durable pull consumer `engine-<engine>` per engine, shared by the workers
  that have it, so a job asking for `acestep` reaches only them. Explicit acks, `ack_wait`
  = `lease_s` (a rendering worker extends it), `max_deliver`.
- stream `<prefix>-results`, subjects `<prefix>.results.<job_id>` (work queue): a worker's
  ResultMessage. The daemon's durable consumer `daemon` acks it once the song row is
  committed, so a result survives a daemon restart.
- stream `<prefix>-advisories`: the server's MAX_DELIVERIES advisories for the jobs stream,
  kept until the daemon reads them; it fails such a job (`worker_lost`).
- `<prefix>.progress.<job_id>` (core NATS): ProgressMessage while a worker renders.
- `<prefix>.cancel.<job_id>` (core NATS): the daemon's cancel; the worker stops and acks.
- bucket `<prefix>-workers` (key-value, TTL three beats): a WorkerAdvert per worker,
  rewritten every `heartbeat_s`.
- bucket `<prefix>-dispatch` (key-value): job id -> the dispatch in flight, so a restarted
  daemon re-attaches to it instead of dispatching the job twice.
- bucket `<prefix>-done` (key-value, 7 days): job id -> the worker that finished it, so a
  redelivered job already made is acked, not made again.
- bucket `<prefix>-files` (object store): the finished audio and `.lrc` files (and a
  cover's source audio), deleted once stored.

Messages are JSON; the models below are the whole wire format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from cassetted import redaction
from cassetted.cluster.settings import ClusterSettings
from cassetted.contract import errors
from cassetted.contract.schemas import JobState, SongRequest, SongSpec
from cassetted.jobs.pipeline import Produced, TaskOrder

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from nats.js.object_store import ObjectStore

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
DONE_TTL_S = 7 * 24 * 3600
RESULT_ACK_WAIT_S = 60.0   # the daemon stores a result within this, or it is delivered again
DUPLICATE_WINDOW_S = 3600  # a job message published twice within this is stored once
OBJECT_CHUNK = 128 * 1024


# Ids and file names come from the other side of the wire (a pool worker may serve many
# homes): they become folder and file names there and here, so nothing but plain names.
_ID = r"^[A-Za-z0-9_-]{1,64}$"
_FILE_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$"


class Names:
    """Subjects, stream, consumer and bucket names for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs_stream = f"{prefix}-jobs"
        self.results_stream = f"{prefix}-results"
        self.advisories_stream = f"{prefix}-advisories"
        self.workers_bucket = f"{prefix}-workers"
        self.dispatch_bucket = f"{prefix}-dispatch"
        self.done_bucket = f"{prefix}-done"
        self.files_bucket = f"{prefix}-files"
        self.results_consumer = "daemon"

    def jobs(self, engine: str) -> str:
        return f"{self.prefix}.jobs.{engine}"

    def consumer(self, engine: str) -> str:
        return f"engine-{engine}"

    def results(self, job_id: str) -> str:
        return f"{self.prefix}.results.{job_id}"

    def progress(self, job_id: str) -> str:
        return f"{self.prefix}.progress.{job_id}"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}.cancel.{job_id}"

    @property
    def max_deliveries(self) -> str:
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.jobs_stream}.*"


# ------------------------------------------------------------------------------ messages


class FileRef(BaseModel):
    """A file in the files bucket: where it goes, and how to know it arrived whole."""

    name: str = Field(pattern=_FILE_NAME, description="A plain file name in the library's "
                      ".incoming/ (or the source's name): no folder, not hidden")
    object: str = Field(max_length=512)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class JobMessage(BaseModel):
    """A job for a worker: everything it needs, nothing from the library but a cover's source."""

    job_id: str = Field(pattern=_ID)
    song_id: str = Field(pattern=_ID)
    engine: str
    spec: SongSpec
    request: SongRequest
    order: dict[str, Any] | None = None  # a TaskOrder's fields
    source: FileRef | None = None        # a cover's or repaint's source audio

    def task_order(self, source_path: Path | None) -> TaskOrder | None:
        if self.order is None:
            return None
        fields = dict(self.order)
        fields["source_path"] = str(source_path) if source_path is not None else None
        return TaskOrder(**fields)


class ProgressMessage(BaseModel):
    worker: str
    state: JobState
    fraction: float = Field(ge=0.0, le=1.0)


class ResultMessage(BaseModel):
    """How a job ended on a worker."""

    job_id: str = Field(pattern=_ID)
    song_id: str = Field(pattern=_ID)
    worker: str
    status: Literal["done", "cancelled", "error"]
    error_code: str | None = None
    error_message: str | None = None
    produced: dict[str, Any] | None = None
    files: list[FileRef] = Field(default_factory=list)


class WorkerAdvert(BaseModel):
    """A worker's heartbeat: who it is and what it can do, for routing and `cluster status`."""

    name: str
    host: str
    engines: list[str]
    loras: dict[str, list[str]] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict, description="engine -> model variant")
    vram_free_mb: float | None = None
    max_duration_s: float | None = None
    busy: str | None = Field(None, description="The job it renders now")
    done: int = 0
    started_at: float
    ts: float


def produced_to_wire(produced: Produced) -> dict[str, Any]:
    values = dataclasses.asdict(produced)
    values["spec"] = produced.spec.model_dump(mode="json")
    return values


def produced_from_wire(values: dict[str, Any]) -> Produced:
    fields = dict(values)
    fields["spec"] = SongSpec.model_validate(fields["spec"])
    for name in ("variant_files", "seeds", "notes"):
        fields[name] = tuple(fields.get(name) or ())
    known = {f.name for f in dataclasses.fields(Produced)}
    return Produced(**{k: v for k, v in fields.items() if k in known})


def order_to_wire(order: TaskOrder | None) -> dict[str, Any] | None:
    if order is None:
        return None
    values = dataclasses.asdict(order)
    values.pop("source_path")
    return values


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- connection


def connect_options(settings: ClusterSettings, name: str) -> dict[str, Any]:
    """nats.connect() keyword arguments: servers, credentials and TLS from `[cluster]`. The
    secrets are registered with the log redaction first."""
    assert settings.nats_url
    import urllib.parse

    servers = [url.strip() for url in settings.nats_url.split(",") if url.strip()]
    for url in servers:  # a password in the URL is a secret too
        secret = urllib.parse.urlsplit(url).password
        if secret:
            redaction.hide(secret)
    options: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
    }
    if settings.user:
        options["user"] = settings.user
    if settings.password is not None:
        redaction.hide(settings.password.get_secret_value())
        options["password"] = settings.password.get_secret_value()
    if settings.token is not None:
        redaction.hide(settings.token.get_secret_value())
        options["token"] = settings.token.get_secret_value()
    if settings.creds_file is not None:
        options["user_credentials"] = str(settings.creds_file)
    if settings.nkey_seed_file is not None:
        options["nkeys_seed"] = str(settings.nkey_seed_file)
    if settings.tls_ca_file or settings.tls_cert_file or any(
            url.strip().startswith("tls://") for url in options["servers"]):
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None)
        if settings.tls_cert_file is not None:
            context.load_cert_chain(str(settings.tls_cert_file),
                                    str(settings.tls_key_file) if settings.tls_key_file else None)
        options["tls"] = context
    return options


async def connect(settings: ClusterSettings, name: str, *, once: bool = False) -> Client:
    """A connection that reconnects by itself once made. `once` (a command-line query):
    the first failure raises instead of retrying."""
    import nats

    async def error_cb(error: Exception) -> None:
        # A one-shot query says the error itself, in one line: no second copy here.
        log.log(logging.DEBUG if once else logging.WARNING, "NATS: %s",
                redaction.redact(str(error) or type(error).__name__))

    async def disconnected_cb() -> None:
        log.warning("NATS: disconnected; reconnecting")

    async def reconnected_cb() -> None:
        log.info("NATS: reconnected")

    options = connect_options(settings, name)
    if "tls" in options:
        _quiet_asyncio_tls_eof()
    if once:
        options.update(allow_reconnect=False, max_reconnect_attempts=0)
    return await nats.connect(**options, error_cb=error_cb,
                              disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb)


class _TlsEofNoise(logging.Filter):
    """nats-py's protocol answers end-of-file with True, which asyncio cannot honour on TLS
    and says so at WARNING on every closed TLS connection; nothing is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("returning true from eof_received()")


def _quiet_asyncio_tls_eof() -> None:
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _TlsEofNoise) for f in asyncio_log.filters):
        asyncio_log.addFilter(_TlsEofNoise())


def explain(error: BaseException, settings: ClusterSettings) -> str:
    """A connection failure in words a person can act on, without secrets. A TLS server
    that wants a client certificate just hangs up, which Python reports as a broken pipe."""
    text = redaction.redact(str(error) or type(error).__name__)
    tls = bool(settings.tls_ca_file or settings.tls_cert_file) or "tls://" in (
        settings.nats_url or "")
    if tls and settings.tls_cert_file is None and isinstance(
            error, (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)):
        return (f"{text} (the server closed the TLS connection: does it require a client "
                "certificate? set [cluster] tls_cert_file and tls_key_file)")
    if "CERTIFICATE_VERIFY_FAILED" in text and settings.tls_ca_file is None:
        return f"{text} (set [cluster] tls_ca_file to the CA that signed the server's certificate)"
    return text


def where(settings: ClusterSettings) -> str:
    """The servers, for messages: never the credentials (a URL may carry user:password@)."""
    import urllib.parse

    hosts = []
    for url in (settings.nats_url or "").split(","):
        parsed = urllib.parse.urlsplit(url.strip())
        hosts.append(f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 4222}")
    return ", ".join(hosts)


async def ensure_consumer(js: JetStreamContext, names: Names, engine: str,
                          settings: ClusterSettings) -> None:
    """The shared pull consumer of one engine's jobs (created once; kept if it exists)."""
    from nats.js import api
    from nats.js.errors import NotFoundError

    try:
        await js.consumer_info(names.jobs_stream, names.consumer(engine))
        return
    except NotFoundError:
        pass
    await js.add_consumer(names.jobs_stream, api.ConsumerConfig(
        durable_name=names.consumer(engine), filter_subject=names.jobs(engine),
        ack_policy=api.AckPolicy.EXPLICIT, ack_wait=settings.lease_s,
        max_deliver=settings.max_deliver, max_ack_pending=-1))


async def ensure_layout(js: JetStreamContext, names: Names, settings: ClusterSettings,
                        engines: list[str]) -> None:
    """Streams, consumers and buckets, as the daemon (their owner) wants them."""
    from nats.js import api
    from nats.js.errors import BadRequestError

    streams = [
        api.StreamConfig(name=names.jobs_stream, subjects=[names.jobs("*")],
                         retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
                         duplicate_window=DUPLICATE_WINDOW_S),
        api.StreamConfig(name=names.results_stream, subjects=[names.results("*")],
                         retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
                         duplicate_window=DUPLICATE_WINDOW_S),
        api.StreamConfig(name=names.advisories_stream, subjects=[names.max_deliveries],
                         retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE),
    ]
    for config in streams:
        try:
            await js.add_stream(config)
        except BadRequestError:  # it exists with another configuration: bring it up to date
            await js.update_stream(config)
    for engine in engines:
        await ensure_consumer(js, names, engine, settings)
    for stream, durable, subject in (
            (names.results_stream, names.results_consumer, names.results("*")),
            (names.advisories_stream, "daemon", names.max_deliveries)):
        try:
            await js.consumer_info(stream, durable)
        except Exception:  # noqa: BLE001 - NotFound (any other error surfaces on add)
            await js.add_consumer(stream, api.ConsumerConfig(
                durable_name=durable, filter_subject=subject, ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=RESULT_ACK_WAIT_S, max_ack_pending=-1))
    buckets = [
        api.KeyValueConfig(bucket=names.workers_bucket, ttl=max(1.0, settings.heartbeat_s * 3),
                           storage=api.StorageType.FILE),  # kept across a server restart
        api.KeyValueConfig(bucket=names.dispatch_bucket, storage=api.StorageType.FILE),
        api.KeyValueConfig(bucket=names.done_bucket, ttl=DONE_TTL_S, storage=api.StorageType.FILE),
    ]
    for bucket in buckets:
        try:
            await js.create_key_value(bucket)
        except BadRequestError:  # it exists with other settings (an older heartbeat_s)
            log.warning("cluster: bucket %s exists with other settings; kept as it is",
                        bucket.bucket)
    try:  # objects a crash left behind go after a week; stored ones are deleted at once
        await js.create_object_store(names.files_bucket, config=api.ObjectStoreConfig(
            bucket=names.files_bucket, ttl=DONE_TTL_S, storage=api.StorageType.FILE))
    except BadRequestError:
        log.warning("cluster: bucket %s exists with other settings; kept", names.files_bucket)


async def kv_value(bucket: KeyValue, key: str) -> bytes | None:
    """The key's value, None when it has none (never set, deleted or expired)."""
    from nats.js.errors import KeyNotFoundError

    try:
        entry = await bucket.get(key)
    except KeyNotFoundError:
        return None
    return entry.value


def _open_partial(path: Path) -> tuple[Path, Any]:
    partial = path.with_name(f".{path.name}.part")
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial, partial.open("wb")


async def download(files: ObjectStore, ref: FileRef, path: Path) -> None:
    """The object into `path`, verified against the size and SHA-256 its sender stated
    (besides the object store's own digest); written under a hidden name, then renamed."""
    partial, handle = await asyncio.to_thread(_open_partial, path)
    try:
        with handle:
            await files.get(ref.object, writeinto=handle)
        size = (await asyncio.to_thread(partial.stat)).st_size
        digest = await asyncio.to_thread(sha256_of, partial)
        if size != ref.size or digest != ref.sha256:
            raise errors.GenerationFailed(
                f"{ref.name} arrived damaged ({size} of {ref.size} bytes, checksum "
                f"{'matches' if digest == ref.sha256 else 'differs'})")
        await asyncio.to_thread(partial.replace, path)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)


async def adverts(bucket: KeyValue) -> list[WorkerAdvert]:
    """The live workers' adverts in the workers bucket (an unreadable one is skipped)."""
    from nats.js.errors import NoKeysError

    try:
        keys = await bucket.keys()
    except NoKeysError:  # nobody alive
        return []
    found = []
    for key in keys:
        value = await kv_value(bucket, key)
        if value is None:
            continue
        try:
            found.append(WorkerAdvert.model_validate_json(value))
        except ValueError:
            log.warning("cluster: worker %r advertises something unreadable", key)
    return found
