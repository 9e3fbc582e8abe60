"""docker-compose.yml and its Caddyfile, checked without a Docker engine: the services are there, the replicas are the
same image with the same settings, their variables are ones the bot reads (and load into valid settings), the
proxy reaches every replica on its WEBHOOK_PORT, and they share the knowledge volume at KNOWLEDGE_DIR."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from tests.driver import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
REPLICAS = sorted(name for name, service in SERVICES.items()
                  if service.get("command") is None and service.get("image") == "civic-news-bot")
CADDYFILE = (REPO / "deploy" / "Caddyfile").read_text(encoding="utf-8")
# What a deployment puts in .env for compose (docker compose reads it for ${...} too).
DOT_ENV = {"TELEGRAM_BOT_TOKEN": "123456789:AAHfakefakefakefakefakefake_-12", "POSTGRES_PASSWORD": "pw_1",
           "WEBHOOK_URL": "https://bot.example.org/telegram", "WEBHOOK_SECRET": "shared_1",
           "BOT_DOMAIN": "bot.example.org"}
_REFERENCE = re.compile(r"\$\{([A-Z_]+)(?::[?-]([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:?message} and ${NAME:-default}; a missing required name fails the test."""
    def one(match: re.Match[str]) -> str:
        name, rest = match.group(1), match.group(2)
        if name in env:
            return env[name]
        assert match.group(0).startswith(f"${{{name}:-"), f"{name} is required: {rest}"
        return rest or ""

    return _REFERENCE.sub(one, value)


def _environment(name: str) -> dict[str, str]:
    return {key: _interpolate(str(value), DOT_ENV) for key, value in SERVICES[name]["environment"].items()}


def _variables_the_bot_reads() -> set[str]:
    source = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "bot").rglob("*.py"))
    return set(re.findall(r"""(?:_value|_int|_flag|env\.get)\(\s*(?:env,\s*)?["']([A-Z][A-Z0-9_]+)["']""", source))


def test_postgres_two_replicas_of_one_image_and_a_proxy() -> None:
    assert {"postgres", "caddy"} <= SERVICES.keys()
    assert len(REPLICAS) == 2
    first, second = (SERVICES[name] for name in REPLICAS)
    assert first["build"] == second["build"] == "."
    assert first["environment"] == second["environment"]   # one configuration, whichever replica takes an update
    for name in REPLICAS:
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {"80:80", "443:443"} <= set(SERVICES["caddy"]["ports"])
    assert not any("ports" in SERVICES[name] for name in REPLICAS)   # only the proxy is reachable from outside


@pytest.mark.parametrize("replica", REPLICAS)
def test_each_replica_reads_only_variables_the_bot_knows_and_they_make_valid_settings(replica: str) -> None:
    environment = _environment(replica)
    assert set(environment) <= _variables_the_bot_reads()
    settings = load_settings({**DOT_ENV, **environment}, env_file=None)
    postgres = SERVICES["postgres"]["environment"]
    assert settings.database_url == (f"postgresql://{postgres['POSTGRES_USER']}:{DOT_ENV['POSTGRES_PASSWORD']}"
                                     f"@postgres:5432/{postgres['POSTGRES_DB']}")
    assert settings.webhook_url == DOT_ENV["WEBHOOK_URL"] and settings.webhook_secret == DOT_ENV["WEBHOOK_SECRET"]
    assert settings.webhook_listen == "0.0.0.0"
    assert f"knowledge:{settings.knowledge_dir}" in SERVICES[replica]["volumes"]   # shared by every replica
    assert Path(settings.database_path).parent.as_posix() in {v.split(":")[1] for v in SERVICES[replica]["volumes"]}


def test_the_proxy_sends_updates_round_robin_to_every_replica_on_its_webhook_port() -> None:
    upstreams = re.search(r"reverse_proxy\s+([^{\n]+)\{", CADDYFILE)
    assert upstreams is not None
    expected = {f"{name}:{load_settings({**DOT_ENV, **_environment(name)}, env_file=None).webhook_port}"
                for name in REPLICAS}
    assert set(upstreams.group(1).split()) == expected
    assert re.search(r"^\s*lb_policy\s+round_robin\s*$", CADDYFILE, re.MULTILINE)
    assert "{$BOT_DOMAIN}" in CADDYFILE and "BOT_DOMAIN" in SERVICES["caddy"]["environment"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in SERVICES["caddy"]["volumes"]


def test_every_named_volume_is_declared() -> None:
    used = {volume.split(":")[0] for service in SERVICES.values() for volume in service.get("volumes", [])
            if not volume.startswith((".", "/"))}
    assert used == set(COMPOSE["volumes"])
