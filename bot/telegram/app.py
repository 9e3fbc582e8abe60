"""The Telegram application: building it, wiring its handlers from the registry, starting and stopping it.

`python -m bot run` sets up logging (`bot.config.configure_logging`) and calls `run`. Long polling by
default; with WEBHOOK_URL set, a webhook that checks Telegram's secret token.
Start-up (`post_init`) opens the database (PostgreSQL with DATABASE_URL, else SQLite), loads the knowledge
base (refusing to start on problems, listed as file:line), sets the command menus, resumes any broadcast that a
restart cut short, and starts following the sources in sources.yaml (`bot.telegram.sources`). With several
replicas the scheduled jobs run on the one that leads (`bot.telegram.replicas`), and each follows reloads made
on the others.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot import knowledge_cache, notify
from bot.config import Settings
from bot.service import Service
from bot.store import open_store
from bot.telegram import commands, maintenance, replicas, sources
from bot.telegram.common import SENDER, SERVICE, SETTINGS, sender_of, service_of
from bot.telegram.keyboards import callback_key

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.INLINE_QUERY]


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    builder = (
        ApplicationBuilder()
        .token(settings.token)
        .rate_limiter(notify.AnswerPacing())
        .concurrent_updates(True)   # one slow reply (or a /reload) never holds up the others
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
    )
    if settings.base_url:
        builder = builder.base_url(settings.base_url)
    application = builder.build()
    application.bot_data[SETTINGS] = settings
    commands.register(application)
    return application


async def _post_init(application: Application) -> None:  # type: ignore[type-arg]
    settings: Settings = application.bot_data[SETTINGS]
    store = open_store(settings.database_url, settings.database_path)
    try:
        service = Service(settings.knowledge_dir, store, user_rate_limit=settings.user_rate_limit,
                          shared=settings.database_url is not None,
                          cache_path=knowledge_cache.beside(settings.database_path), article_key=callback_key)
    except BaseException:
        store.close()
        raise
    application.bot_data[SERVICE] = service
    if isinstance(limiter := application.bot.rate_limiter, notify.AnswerPacing):
        limiter.store = store
    sender = application.bot_data[SENDER] = notify.sender(settings.token, settings.base_url)
    await sender.initialize()
    log.info("knowledge base %s: %d articles, %d FAQ entries",
             settings.knowledge_dir, len(service.kb.articles), len(service.kb.faq))
    # On a new database the first look records every article as announced (what the knowledge base holds before
    # the first start is not news): here, before a /reload on this replica could announce anything.
    await asyncio.to_thread(notify.unannounced, store, service.kb)
    await commands.set_menus(application)
    await replicas.start(application, shared=settings.database_url is not None)
    replicas.when_leading(application, _resume_broadcast, "broadcast")
    assert application.job_queue is not None
    # Every replica sweeps: deliveries are claimed in the store, so the work is shared, never doubled.
    application.job_queue.run_repeating(_sweep, interval=notify.SWEEP, first=notify.SWEEP, name="broadcast-sweep")
    application.job_queue.run_repeating(replicas.leader_only(maintenance.prune), interval=maintenance.DAY,
                                        name="retention", job_kwargs=maintenance.at_start())
    sources.start(application)


async def _resume_broadcast(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Deliver what was queued and not sent, and announce articles never announced (a crash during a /reload, or
    files added while the bot was down): at start, and on the replica that takes over from a dead leader."""
    service = service_of(context)
    fresh = await asyncio.to_thread(notify.unannounced, service.store, service.kb)
    report = await notify.notify_new(sender_of(context.application), service.store, service.kb, fresh)
    if report.delivered or report.failed:
        log.info("resumed broadcast: %s", report)


async def _sweep(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Finish what another replica left when it died, and retry what was left pending: nothing, usually."""
    service = service_of(context)
    report = await notify.broadcast(sender_of(context.application), service.store, service.kb)
    if report.delivered or report.removed_chats:
        log.info("broadcast sweep: %s", report)


async def _post_shutdown(application: Application) -> None:  # type: ignore[type-arg]
    await sources.stop(application)   # before the store closes: a poll under way writes its source's state
    service: Service | None = application.bot_data.get(SERVICE)
    if service is not None:
        await replicas.stop(application)
        service.store.close()
    if SENDER in application.bot_data:
        await sender_of(application).shutdown()


def webhook_options(settings: Settings) -> dict[str, Any]:
    """`run_webhook` arguments: listen on the URL's path, and always require Telegram's secret token."""
    assert settings.webhook_url is not None
    return {
        "listen": settings.webhook_listen,
        "port": settings.webhook_port,
        "url_path": urlsplit(settings.webhook_url).path.lstrip("/"),
        "webhook_url": settings.webhook_url,
        "secret_token": settings.webhook_secret or secrets.token_urlsafe(32),
        "allowed_updates": ALLOWED_UPDATES,
    }


def run(settings: Settings) -> None:
    """Run until stopped (Ctrl-C or SIGTERM): long polling, or a webhook when WEBHOOK_URL is set."""
    application = build_application(settings)
    if settings.webhook_url is None:
        application.run_polling(allowed_updates=ALLOWED_UPDATES)
    else:
        application.run_webhook(**webhook_options(settings))
