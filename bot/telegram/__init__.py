"""The Telegram front end: python-telegram-bot wiring (`app`), the one command registry (`commands`), one module per
feature (`asking`, `browsing`, `subscriptions`, `admin`, `language`), buttons (`keyboards`) and what they share
(`common`). Handlers are thin: they resolve the reader's language, call `bot.service.Service` off the event loop
and send what `bot.render` writes."""
