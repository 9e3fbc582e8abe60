"""Several replicas of the bot on one PostgreSQL database, behind one webhook URL.

Each replica handles the updates it receives, and nothing a later update needs is kept in a process (buttons carry
their data, the store holds the rest), so any replica can take the next update. What must happen once, or
everywhere, is coordinated through the store:

- the scheduled jobs (source polling, retention) run on the one replica holding the `jobs` lease. It renews the
  lease every RENEW_EVERY seconds; when it dies another replica takes over within LEASE_SECONDS. A job is gated by
  registering `leader_only(callback)` instead of `callback`: one line per job. Catch-up work a dead leader may
  have left (the broadcast resume) is registered with `when_leading`: it runs each time a replica takes the lease;
- a reload that changed the knowledge base bumps the store's knowledge-base version (`Service.reload`); every
  replica looks every KB_POLL_SECONDS and rereads the KNOWLEDGE_DIR they share when it moved (`Service.follow`),
  then joins the broadcast of the new articles (deliveries are claimed per chat in the store: shared, not doubled).

With SQLite there is one process, so it leads from the start without a lease: a restart after a crash must not
wait for the dead process's lease to run out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from telegram.ext import Application

from bot import notify
from bot.store import Store, StoreError
from bot.telegram.common import SERVICE, Context, sender_of, service_of

log = logging.getLogger(__name__)

REPLICA = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"   # this process, in the leases
JOBS_LEASE = "jobs"
LEASE_SECONDS = 15.0    # a dead leader's jobs stop for at most this long (plus RENEW_EVERY)
RENEW_EVERY = 5.0       # a third of the lease: two renewals may fail (a database blip) before it is lost
KB_POLL_SECONDS = 2.0   # how soon a reload elsewhere reaches this replica
LEADERSHIP = "leadership"

Job = Callable[[Context], Awaitable[None]]


class Leadership:
    """Whether this replica runs the scheduled jobs: it holds the store's `jobs` lease.

    `leading` counts from before the renewal was asked for, on this process's monotonic clock, so a renewal
    that comes late (a stalled event loop) never makes this replica believe it still leads once the lease ran
    out in the database.
    """

    def __init__(self, store: Store, replica: str = REPLICA, seconds: float = LEASE_SECONDS, *, alone: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.replica = replica
        self.seconds = seconds
        self.alone = alone   # the only process on its database (SQLite): always the leader, no lease
        self.on_lead: list[tuple[Job, str]] = []   # `when_leading` jobs
        self._clock = clock
        self._until = 0.0

    @property
    def leading(self) -> bool:
        return self.alone or self._clock() < self._until

    async def renew(self) -> bool:
        """Take the lease if it is free or expired, or renew ours; whether this replica leads now."""
        if self.alone:
            return True
        asked, was = self._clock(), self.leading
        try:
            held = await asyncio.to_thread(self.store.acquire_lease, JOBS_LEASE, self.replica, self.seconds)
        except StoreError as exc:
            log.warning("could not renew the lease on the scheduled jobs: %s", exc)
            held = False
        self._until = asked + self.seconds if held else 0.0
        if held != was:
            log.info("replica %s %s the scheduled jobs", self.replica, "runs" if held else "no longer runs")
        return held

    async def resign(self) -> None:
        """At a clean shutdown: give the lease up, so another replica takes the jobs over at once."""
        if self.alone or not self.leading:
            return
        self._until = 0.0
        try:
            await asyncio.to_thread(self.store.release_lease, JOBS_LEASE, self.replica)
        except StoreError as exc:
            log.warning("could not give up the lease on the scheduled jobs (it expires by itself): %s", exc)


def leader_only(job: Job) -> Job:
    """A JobQueue callback that runs only on the replica holding the jobs lease (and is skipped elsewhere)."""

    @functools.wraps(job)
    async def gated(context: Context) -> None:
        leadership: Leadership = context.bot_data[LEADERSHIP]
        if leadership.leading:
            await job(context)

    return gated


def when_leading(application: Application, job: Job, name: str) -> None:  # type: ignore[type-arg]
    """Run `job` once each time this replica takes the jobs lease (now, if it holds it): the catch-up of work a
    dead leader may have left. After `start`."""
    leadership: Leadership = application.bot_data[LEADERSHIP]
    leadership.on_lead.append((job, name))
    if leadership.leading:
        assert application.job_queue is not None
        application.job_queue.run_once(job, when=0, name=name)


async def start(application: Application, *, shared: bool) -> None:  # type: ignore[type-arg]
    """In `post_init`, once the service is up and before any job runs. `shared`: other replicas may use the
    database, so take the jobs lease if it is free and keep renewing it; and in any case follow reloads made
    elsewhere (`python -m bot poll` publishes too)."""
    leadership = Leadership(application.bot_data[SERVICE].store, alone=not shared)
    application.bot_data[LEADERSHIP] = leadership
    assert application.job_queue is not None
    if shared:
        await leadership.renew()
        application.job_queue.run_repeating(_renew, interval=RENEW_EVERY, first=RENEW_EVERY, name="jobs lease")
    application.job_queue.run_repeating(follow_knowledge, interval=KB_POLL_SECONDS, first=KB_POLL_SECONDS,
                                        name="knowledge version")


async def stop(application: Application) -> None:  # type: ignore[type-arg]
    """In `post_shutdown`, after the JobQueue has stopped and before the store is closed."""
    leadership: Leadership | None = application.bot_data.get(LEADERSHIP)
    if leadership is not None:
        await leadership.resign()


async def _renew(context: Context) -> None:
    leadership: Leadership = context.bot_data[LEADERSHIP]
    was = leadership.leading
    if await leadership.renew() and not was:
        assert context.job_queue is not None
        for job, name in leadership.on_lead:
            context.job_queue.run_once(job, when=0, name=name)


async def follow_knowledge(context: Context) -> None:
    """Swap in what a reload on another replica (or `python -m bot poll`) put into the shared KNOWLEDGE_DIR."""
    try:
        result = await service_of(context).follow()
    except StoreError as exc:
        log.warning("could not read the knowledge-base version: %s", exc)
        return
    if result is None:
        return
    if result.ok:
        changes = result.changes
        log.info("followed a reload made elsewhere: %d articles (%d added, %d updated, %d removed)",
                 len(result.new.articles), len(changes.added), len(changes.updated), len(changes.removed))
        if changes.added:   # the replica that reloaded announced them: take a share of the deliveries (claimed)
            service = service_of(context)
            broadcast = notify.broadcast(sender_of(context.application), service.store, service.kb)
            context.application.create_task(broadcast, name="broadcast")   # notify logs its report
    else:
        log.warning("a reload made elsewhere reads with problems here, so the old knowledge base stays: %s",
                    result.problems[0])

