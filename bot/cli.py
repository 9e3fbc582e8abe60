"""The command line: ``python -m bot build|check|ask|eval|run|shell``.

Each command is a thin translation from arguments to the plain functions of
the feature modules, and from their results to printed text and exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
    p.add_argument("--questions", type=Path, required=True, metavar="FILE.jsonl", help="lines of {question, doc_id}")
    p.add_argument("--offtopic", type=Path, metavar="FILE.jsonl", help="questions the bot should refuse")
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions")
    p.set_defaults(func=_cmd_eval)

    p = commands.add_parser("run", help="run the Telegram bot")
    p.set_defaults(func=_cmd_run)

    p = commands.add_parser("shell", help="chat with the bot in the terminal, without Telegram")
    _knowledge_arg(p)
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
    raise NotImplementedError("build: owned by the ingestion work")


def _cmd_check(args: argparse.Namespace) -> int:
    raise NotImplementedError("check: owned by the ingestion work")


def _cmd_ask(args: argparse.Namespace) -> int:
    raise NotImplementedError("ask: owned by the answering work")


def _cmd_eval(args: argparse.Namespace) -> int:
    raise NotImplementedError("eval: owned by the answering work")


def _cmd_run(args: argparse.Namespace) -> int:
    raise NotImplementedError("run: owned by the Telegram work")


def _cmd_shell(args: argparse.Namespace) -> int:
    raise NotImplementedError("shell: owned by the Telegram work")
