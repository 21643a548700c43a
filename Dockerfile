# The chat-analytics service (API + projector), for docker-compose.yml. Kafka runs in its own container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHAT_ANALYTICS_DB=/data/chat-analytics.duckdb \
    CHAT_ANALYTICS_TOKENS_FILE=/data/tokens.json \
    CHAT_ANALYTICS_HOME=/data/cache

WORKDIR /app
COPY . /app
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data chat-analytics \
    && mkdir -p /data \
    && chown chat-analytics /data

# The read model and the token file live in /data, so they survive a new image.
VOLUME ["/data"]
USER chat-analytics
EXPOSE 8000

CMD ["chat-analytics", "serve", "--host", "0.0.0.0", "--port", "8000"]
