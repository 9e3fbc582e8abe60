"""The command line: ``python -m bot build|check|ask|eval|run|health|shell``.

Each command is a thin translation from arguments to the plain functions of
the feature modules, and from their results to printed text and exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.search import Index

DEFAULT_KNOWLEDGE = Path("knowledge")


def _knowledge_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--knowledge", type=Path, default=None, metavar="DIR",
        help="knowledge base directory (default: $KNOWLEDGE_DIR or ./knowledge)",
    )


def knowledge_dir(args: argparse.Namespace) -> Path:
    """--knowledge wins, then KNOWLEDGE_DIR, then ./knowledge."""
    if args.knowledge is not None:
        return args.knowledge
    from bot.config import knowledge_dir_from_env

    return knowledge_dir_from_env()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("build", help="ingest articles into the knowledge base")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="file, folder (recursive) or - for standard input")
    _knowledge_arg(p)
    p.add_argument("--resummarise", action="store_true", help="recompute summaries, even hand-edited ones")
    p.set_defaults(func=_cmd_build)

    p = commands.add_parser("check", help="validate the knowledge base")
    _knowledge_arg(p)
    p.set_defaults(func=_cmd_check)

    p = commands.add_parser("ask", help="answer a question from the command line")
    _knowledge_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per question")
    p.add_argument("question", nargs="+", metavar="QUESTION", help="the question, or - to read one per line from stdin")
    p.set_defaults(func=_cmd_ask)

    p = commands.add_parser("eval", help="measure answer quality on a question set")
    _knowledge_arg(p)
    p.add_argument("--questions", type=Path, metavar="FILE.jsonl", help="lines of {question, doc_id}")
    p.add_argument("--offtopic", type=Path, metavar="FILE.jsonl", help="questions the bot should refuse")
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions")
    p.add_argument("--sweep", type=Path, nargs="?", const=Path("../shared/eval"), metavar="DATA",
                   help="knowledge bases of 1-240 xquad paragraphs and the shipped one (DATA: ../shared/eval)")
    p.set_defaults(func=_cmd_eval)

    p = commands.add_parser("poll", help="poll the sources in sources.yaml and add their new articles")
    _knowledge_arg(p)
    p.add_argument("--once", action="store_true", help="poll every source once and exit (for cron)")
    p.set_defaults(func=_cmd_poll)

    p = commands.add_parser("run", help="run the Telegram bot")
    p.set_defaults(func=_cmd_run)

    p = commands.add_parser("health", help="exit 0 if the bot could start now, else 1 and why (Docker HEALTHCHECK)")
    p.set_defaults(func=_cmd_health)

    p = commands.add_parser("migrate-db", help="copy a SQLite database into PostgreSQL (safe to repeat)")
    p.add_argument("--from", dest="source", type=Path, required=True, metavar="FILE", help="the SQLite database")
    p.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://user:pass@host/db")
    p.set_defaults(func=_cmd_migrate_db)

    p = commands.add_parser("shell", help="chat with the bot in the terminal, without Telegram")
    _knowledge_arg(p)
    p.add_argument("--language", default=None, metavar="CODE",
                   help="the language the bot speaks: en, ru or kk (default: English)")
    p.set_defaults(func=_cmd_shell)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from bot import ingest

    report = ingest.build(args.sources, knowledge_dir(args), resummarise=args.resummarise, progress=True)
    for failure in report.failed:
        print(f"failed: {failure}")
    print(f"{report.summary()} ({report.seconds:.1f} s)")
    return 1 if report.failed else 0


def _cmd_check(args: argparse.Namespace) -> int:
    from bot import knowledge, sources

    kb, problems = knowledge.scan(knowledge_dir(args))
    problems += sources.read_sources(knowledge_dir(args))[1]
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"OK: {len(kb.articles)} articles, {len(kb.faq)} FAQ entries")
    return 0


def _load_index(knowledge: Path) -> Index | None:
    """The index of a valid knowledge base, or None after printing why it cannot be used.

    Loaded as the bot loads it, with the parsed articles and the built index kept beside $DATABASE_PATH
    when its directory exists (the bot's data, not a directory made for one question), so asking again of
    unchanged files neither parses nor indexes them again.
    """
    from bot import knowledge_cache
    from bot.config import DEFAULT_DATABASE_PATH, environment
    from bot.knowledge import KnowledgeError
    from bot.service import Service
    from bot.store import Store

    database = Path(environment().get("DATABASE_PATH") or DEFAULT_DATABASE_PATH)
    cache = knowledge_cache.beside(database) if database.parent.is_dir() else None
    try:
        return Service(knowledge, Store(":memory:"), cache_path=cache).index
    except KnowledgeError as exc:
        _print_problems(knowledge, exc.problems)
        return None


def _cmd_ask(args: argparse.Namespace) -> int:
    import json

    from bot.answer import answer_question
    from bot.render import render_text

    index = _load_index(knowledge_dir(args))
    if index is None:
        return 1
    if args.question == ["-"]:
        questions = [line.strip() for line in sys.stdin if line.strip()]
    else:
        questions = [" ".join(args.question)]
    for number, question in enumerate(questions):
        answer = answer_question(index, question)
        if args.json:
            print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
        else:
            print(("\n" if number else "") + render_text(answer), flush=True)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from bot import evaluation

    if args.sweep is not None:
        return _cmd_sweep(args)
    if args.questions is None:
        print("eval needs --questions FILE.jsonl (or --sweep)", file=sys.stderr)
        return 2
    try:
        questions = evaluation.read_questions(args.questions, args.limit)
        offtopic = evaluation.read_questions(args.offtopic, args.limit, need_doc=False) if args.offtopic else []
    except (OSError, evaluation.BadQuestions) as exc:
        print(exc, file=sys.stderr)
        return 2
    index = _load_index(knowledge_dir(args))
    if index is None:
        return 1
    ours = evaluation.evaluate_answerer(index, questions, offtopic)
    baseline = evaluation.evaluate_bm25(index.kb, questions)
    print(evaluation.table([ours, baseline], label=args.questions.stem))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from bot import evaluation

    index = _load_index(knowledge_dir(args))
    if index is None:
        return 1
    try:
        print(evaluation.sweep_report(args.sweep, index))
    except evaluation.MissingData as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def _print_problems(knowledge: Path, problems: Sequence[object]) -> None:
    print(f"The knowledge base in {knowledge} has problems; fix them (python -m bot check) and try again:",
          file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from telegram.error import InvalidToken, NetworkError

    from bot.config import ConfigError, configure_logging, load_settings
    from bot.knowledge import KnowledgeError
    from bot.store import StoreError
    from bot.telegram.app import run

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    redact = configure_logging(settings)
    try:
        run(settings)
    except KnowledgeError as exc:
        _print_problems(settings.knowledge_dir, exc.problems)
        return 1
    except StoreError as exc:
        where = "at DATABASE_URL" if settings.database_url else settings.database_path
        print(f"Cannot use the database {where}: {exc}", file=sys.stderr)
        return 1
    except InvalidToken:
        print("Telegram refused TELEGRAM_BOT_TOKEN; copy it again from @BotFather (or /revoke and get a new one).",
              file=sys.stderr)
        return 2
    except NetworkError as exc:
        where = settings.base_url or "api.telegram.org"
        print(f"Cannot reach Telegram at {where}: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    """The configuration loads, the database opens and answers, the knowledge base loads: exit 0 and one line.
    Otherwise exit 1 and one line saying what is wrong, for `docker inspect` to show."""
    from bot.config import ConfigError, load_settings
    from bot.knowledge import KnowledgeError, load
    from bot.store import StoreError, open_store

    try:
        settings = load_settings()
    except ConfigError as exc:
        return _unhealthy(f"configuration: {str(exc).splitlines()[0]}")
    try:
        store = open_store(None, settings.database_path)
        try:
            store.kb_version()
        finally:
            store.close()
    except StoreError as exc:
        return _unhealthy(f"database: {exc}")
    try:
        kb = load(settings.knowledge_dir)
    except KnowledgeError as exc:
        return _unhealthy(f"knowledge base: {exc.problems[0]} (python -m bot check lists all {len(exc.problems)})")
    print(f"healthy: articles: {len(kb.articles)}, FAQ entries: {len(kb.faq)}, database: answers")
    return 0


def _unhealthy(reason: str) -> int:
    print("unhealthy: " + " ".join(reason.split()), file=sys.stderr)
    return 1


def _cmd_migrate_db(args: argparse.Namespace) -> int:
    from bot.store import Store, StoreError
    from bot.store.migrate import copy
    from bot.store.postgres import PostgresBackend

    if not args.source.is_file():
        print(f"No SQLite database at {args.source}", file=sys.stderr)
        return 2
    try:
        source = Store(args.source)
        try:
            target = Store.on(PostgresBackend(args.target))
            try:
                counts = copy(source, target)
            finally:
                target.close()
        finally:
            source.close()
    except StoreError as exc:
        print(f"Nothing was copied: {exc}", file=sys.stderr)
        return 1
    print(", ".join(f"{name}: {count}" for name, count in counts.items()))
    return 0


def _cmd_poll(args: argparse.Namespace) -> int:
    """Prints what was added; exit 1 when a source failed (or sources.yaml has problems), for cron to mail."""
    import asyncio

    from bot.config import ConfigError, local_settings
    from bot.fetch import FetchLimits
    from bot.poller import Poller, PollOutcome
    from bot.sources import read_sources
    from bot.store import Store, StoreError, open_store

    try:
        settings = local_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    knowledge = args.knowledge or settings.knowledge_dir
    sources, problems = read_sources(knowledge)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not sources:
        print(f"No sources to poll: list them in {knowledge / 'sources.yaml'} (see knowledge/README.md).",
              file=sys.stderr)
        return 2
    database = settings.database_path
    limits = FetchLimits(allow_private=settings.allow_private_sources)
    failed = bool(problems)

    async def show(outcomes: list[PollOutcome]) -> None:
        nonlocal failed
        for outcome in outcomes:
            for ref in outcome.added:
                print(f"added {ref.id}: {ref.title}", flush=True)
            for ref in outcome.updated:
                print(f"updated {ref.id}: {ref.title}", flush=True)
            for failure in outcome.failed:
                print(f"failed: {failure}", file=sys.stderr)
            if outcome.error is not None:
                print(f"failed: {outcome.source.url}: {outcome.error}", file=sys.stderr)
            failed = failed or not outcome.ok or bool(outcome.failed)
        if any(outcome.added or outcome.updated for outcome in outcomes):
            await asyncio.to_thread(store.bump_kb_version)   # the running bot (every replica) follows

    async def poll(store: Store) -> None:
        async with Poller(knowledge, store, limits=limits) as poller:
            if args.once:
                await show(await poller.poll_all())
            else:
                await poller.run(show)

    try:
        store = open_store(settings.database_url, database)
    except StoreError as exc:
        where = "at DATABASE_URL" if settings.database_url else database
        print(f"Cannot use the database {where}: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(poll(store))
    finally:
        store.close()
    return 1 if failed else 0


def _cmd_shell(args: argparse.Namespace) -> int:
    from bot import i18n, shell
    from bot.knowledge import KnowledgeError
    from bot.service import Service
    from bot.store import Store

    if args.language is not None and args.language not in i18n.languages():
        print(f"--language must be one of {', '.join(i18n.languages())}, not {args.language!r}", file=sys.stderr)
        return 2
    knowledge = knowledge_dir(args)
    try:
        service = Service(knowledge, Store(":memory:"))
    except KnowledgeError as exc:
        _print_problems(knowledge, exc.problems)
        return 1
    shell.run(service, i18n.translator(args.language), interactive=sys.stdin.isatty())
    return 0
