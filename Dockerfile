# bdx node image: `docker build -t bdx .`; run with docker-compose.yml (three country nodes).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/opt/numba-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY matcher ./matcher
COPY policy ./policy
COPY certs ./certs
COPY node ./node
# Fingerprint search's numba stages are compiled into the image (NUMBA_CACHE_DIR), not at
# every container's first start. The cache stays writable by the node: on a CPU other than the
# build machine's, numba compiles again and saves, and a read-only cache failed that save.
RUN pip install . \
    && python -c 'from matcher.search.fingerprint import warm_up; warm_up()' \
    && useradd --system --uid 10001 --home-dir /data bdx \
    && mkdir -p /data /pki \
    && chown bdx:bdx /data /pki \
    && chown -R bdx:bdx /opt/numba-cache \
    && chmod 700 /data

USER bdx
WORKDIR /data
EXPOSE 8443 8444
ENTRYPOINT ["bdx"]
CMD ["--help"]
