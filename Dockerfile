# The civic news bot: `docker build -t civic-news-bot .` then
#   docker run -d --env-file .env -v civic-news-data:/data civic-news-bot
# The knowledge base is baked in at /app/knowledge; mount your own over it to edit it
# without rebuilding (-v "$PWD/knowledge:/app/knowledge:ro"), then send /reload.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KNOWLEDGE_DIR=/app/knowledge \
    DATABASE_PATH=/data/bot.sqlite3

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install .
COPY knowledge ./knowledge

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bot \
    && mkdir /data && chown bot /data
USER bot
VOLUME /data
# Used only in webhook mode (WEBHOOK_URL set); long polling needs no open port.
EXPOSE 8443

CMD ["python", "-m", "bot", "run"]
