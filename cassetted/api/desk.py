"""The song desk: who is asking, and a song request admitted and queued.

Every way a song is asked for meets here: the `song/create` and `voice` handlers, karaoke,
the Home Assistant panel and Hermes satellites. Admission is the household's (rooms, modes,
quota, learned defaults) and the party's (a party closed to guests); the queue is the job
runner's. A repeated request_id is answered from its job, never charged twice.
"""

from __future__ import annotations

from typing import Any

from cassetted.contract import errors
from cassetted.contract.schemas import ENVELOPE_FIELDS, JobState, Reply, SongRequest
from cassetted.features.party import PartyHost
from cassetted.household.identity import Caller
from cassetted.household.service import Household
from cassetted.jobs.runner import JobRunner, is_retry, retryable
from cassetted.mqtt.router import MQTT_USER
from cassetted.store.database import Job, Store


class SongDesk:
    """Identifies callers; admits and queues their song requests."""

    def __init__(self, store: Store, runner: JobRunner, household: Household,
                 party: PartyHost) -> None:
        self._store = store
        self._runner = runner
        self._household = household
        self._party = party

    async def caller(self, token: str | None, claimed_user: str | None) -> Caller:
        """Who sent the command being handled."""
        return await self._household.caller(token, claimed_user, MQTT_USER.get())

    def bridge_caller(self, user: str | None) -> Caller:
        """The caller of a request from Home Assistant's panel or a Hermes satellite."""
        return self._household.bridge_caller(user)

    async def admit_and_submit(self, request: SongRequest, caller: Caller,
                                echo: bool = False, **extra: Any) -> Reply:
        """Admission (household), then the queue; the Reply of a song request (with the
        request as admitted when `echo`: a voice command shows what it was read as)."""
        async with self._household.admission(request.request_id):
            # A repeat (QoS 1 redelivery) is answered, never charged or learned from twice.
            if request.request_id and (self._household.counts_songs or request.room):
                existing = await self._store.call(Job.get_or_none, Job.request_id == request.request_id)
                if existing is not None and not retryable(existing):
                    quota = await self._household.quota(caller)
                    return Reply(ok=True, request_id=request.request_id, job_id=existing.id,
                                 state=JobState(existing.state), duplicate=True, quota=quota, **extra)
            if request.party:
                self._party.admit(request, caller)  # e.g. a party closed to guests
            request, charge, extras = await self._household.admit(request, caller)
            if echo:
                extras["request"] = request.model_dump(exclude_none=True,
                                                       exclude=set(ENVELOPE_FIELDS))
            job, duplicate = await self._runner.submit(request, charge)
            self._household.admitted(charge)
            if charge.quota is not None:
                quota = charge.quota
            else:  # not charged: the household is off, or the request_id was a repeat
                quota = await self._household.quota(caller)
        if request.party:
            extras.update(await self._party.enqueue(job.id, request, caller))
        return Reply(ok=True, request_id=request.request_id, job_id=job.id,
                     state=JobState(job.state), duplicate=duplicate, quota=quota,
                     retry=True if is_retry(job) else None, **extras, **extra)

    async def submit(self, request: SongRequest) -> dict[str, Any]:
        """`create_song` for adapters that speak another protocol (Hermes, the Home Assistant
        panel): a plain dict."""
        try:
            reply = await self.admit_and_submit(request, self.bridge_caller(request.user))
        except errors.CassettedError as error:
            reply = Reply(ok=False, request_id=request.request_id, error=error.info(), **error.details)
        return reply.model_dump(mode="json", exclude_none=True)

