"""`python -m bot shell`: the same bot in the terminal, without Telegram, driven by the Telegram command registry.

Every command with a terminal twin in `bot.telegram.commands.COMMANDS` works here with the same words and the
same answers, as plain text, in the language given with --language.
"""

from __future__ import annotations

import sys
from typing import TextIO

from bot.i18n import Translator
from bot.service import Service
from bot.telegram.commands import COMMANDS, help_in_terminal

QUIT = ("/quit", "/exit")


def reply(service: Service, line: str, tr: Translator) -> str | None:
    """The reply to one line; None means the user asked to leave, "" that there is nothing to say."""
    line = line.strip()
    if not line:
        return ""
    command, _, rest = line.partition(" ")
    command = command.lower()
    if command in QUIT:
        return None
    if not command.startswith("/"):
        command, rest = "/ask", line
    entry = next((c for c in COMMANDS if f"/{c.name}" == command and c.terminal is not None), None)
    if entry is None or entry.terminal is None:
        return f"{tr('refusal.unknown_command')}\n\n{help_in_terminal(service, '', tr)}"
    return entry.terminal(service, rest, tr)


def run(service: Service, tr: Translator, source: TextIO = sys.stdin, interactive: bool = False) -> None:
    """Read lines until /quit or the end of input; a prompt and a greeting when a person is typing."""
    if interactive:
        print(f"{tr.plural('articles.count', len(service.kb.articles))}. {help_in_terminal(service, '', tr)}\n")
    while True:
        try:
            line = input("> ") if interactive else source.readline()
        except EOFError:
            break
        if not interactive and not line:
            break
        answer = reply(service, line, tr)
        if answer is None:
            break
        if answer:
            print(answer + "\n", flush=True)
