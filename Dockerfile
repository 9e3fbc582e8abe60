# The civic news bot: `docker build -t civic-news-bot .` then
#   docker run -d --env-file .env -v civic-news-data:/data civic-news-bot
# The knowledge base is baked in at /app/knowledge; mount your own over it to edit it
# without rebuilding (-v "$PWD/knowledge:/app/knowledge:ro"), then send /reload.
# The base image is pinned by digest, so a rebuild gets the very same Python and Debian. The digest was taken from
# public use; it was not pulled here (no Docker engine). To move on: docker pull python:3.11-slim-bookworm, then
# docker inspect --format '{{index .RepoDigests 0}}' python:3.11-slim-bookworm
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KNOWLEDGE_DIR=/app/knowledge \
    DATABASE_PATH=/data/bot.sqlite3

WORKDIR /app
# Every dependency exactly as locked, each file checked against its hash; then the bot itself, adding nothing.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-deps .
COPY knowledge ./knowledge

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bot \
    && mkdir /data && chown bot /data
USER bot
VOLUME /data
# Used only in webhook mode (WEBHOOK_URL set); long polling needs no open port.
EXPOSE 8443

# Healthy while the configuration loads, the database answers and the knowledge base loads (one line says why not).
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 CMD ["python", "-m", "bot", "health"]
CMD ["python", "-m", "bot", "run"]
