# The app image: the `recsys` command and its pinned dependencies, run as a non-root user.
# docker-compose.yml builds it for the periodic retrain (and the other app services):
#
#   docker build -t recsys-realtime .
#   docker run --rm -e KAFKA_BOOTSTRAP=host:9092 recsys-realtime retrain --every 30m
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# implicit's compiled ALS links against OpenMP and the C++ runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY batch ./batch
COPY stream ./stream
COPY recsys ./recsys
COPY profiles ./profiles
RUN pip install . \
    && python -c "from shared.scoring import kernels; kernels.warm()" \
    && useradd --create-home --uid 10001 recsys \
    && mkdir -p /models /tables \
    && chown recsys:recsys /models /tables

# /models and /tables are where named volumes mount; they start owned by the user that writes to them.
USER recsys
ENTRYPOINT ["recsys"]
CMD ["--help"]
