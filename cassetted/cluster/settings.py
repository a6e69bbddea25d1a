"""`[cluster]`: where the NATS server is, how to log in, and how jobs are leased.

Kept free of other cassetted imports so `cassetted.config` can mount it without a cycle.
Without `nats_url` nothing here is used: the daemon renders in its own worker processes,
exactly as before. The same table configures `cassetted worker` on another machine, which
needs only the address, the credentials and its own engine settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_NAME = r"^[A-Za-z0-9_-]{1,32}$"


class ClusterSettings(BaseModel):
    """`[cluster]`: NATS JetStream as the job queue between the daemon and its workers."""

    model_config = ConfigDict(extra="forbid")

    nats_url: str | None = Field(
        None, description='NATS server(s), e.g. "nats://127.0.0.1:4222" or "tls://hub:4222"; '
                          "several separated by commas. Empty: no cluster, local workers only.")
    user: str | None = Field(None, description="NATS user (with `password`)")
    password: SecretStr | None = None
    token: SecretStr | None = Field(None, description="NATS token authentication")
    creds_file: Path | None = Field(None, description="A NATS .creds file (JWT and NKEY seed)")
    nkey_seed_file: Path | None = Field(None, description="A file holding an NKEY user seed")
    tls_ca_file: Path | None = Field(None, description="CA that signed the server's certificate")
    tls_cert_file: Path | None = Field(None, description="Client certificate (mutual TLS)")
    tls_key_file: Path | None = None
    prefix: str = Field("cassetted", pattern=_NAME,
                        description="Names the subjects, stream and buckets: one per home on a "
                                    "shared server (accounts keep homes apart; see README)")
    local_workers: int = Field(1, ge=0, le=16, description="Worker processes the daemon runs "
                               "itself, pulling from the same queue (0 = render nothing here)")
    max_in_flight: int = Field(32, ge=1, le=1024, description="Jobs handed to the queue at once")
    lease_s: float = Field(30.0, ge=1, le=3600, description="A worker that stops answering for "
                           "this long loses its job to another (it extends the lease while it "
                           "renders)")
    max_deliver: int = Field(3, ge=1, le=50, description="Workers a job is handed to before it "
                             "fails (worker_lost)")
    heartbeat_s: float = Field(5.0, ge=0.1, le=300, description="How often a worker says it is "
                               "alive and what it can do")
    no_worker_s: float = Field(60.0, ge=0, le=86400, description="How long a job waits for a "
                               "worker with its engine before it fails (no_worker)")
    domain: str | None = Field(None, pattern=_NAME, description="The JetStream domain of the "
                               "home's server, for a worker connected elsewhere (a community "
                               "hub the home joins as a leaf node)")
    overflow_after_s: float | None = Field(None, ge=0, le=86400, description="`cassetted "
                                           "worker` of a shared pool: it takes only jobs that "
                                           "waited this long, so the home's own workers get "
                                           "them first")
    engines: list[str] = Field(default_factory=list, description="`cassetted worker`: the "
                               "engines it renders with (empty = [generation] engine)")
    max_duration_s: float | None = Field(None, gt=0, description="`cassetted worker`: the "
                                         "longest song it takes (advertised)")

    @field_validator("engines")
    @classmethod
    def _engine_names(cls, value: list[str]) -> list[str]:
        import re

        for name in value:
            if not re.fullmatch(_NAME, name):
                raise ValueError(f"not an engine name: {name!r}")
        return list(dict.fromkeys(value))

    @property
    def enabled(self) -> bool:
        return bool(self.nats_url)
