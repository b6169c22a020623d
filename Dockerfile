# SmartMiner Manager image: Python + Debian's Chromium and ChromeDriver (no driver download, ever).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver tini \
 && rm -rf /var/lib/apt/lists/*

ENV CHROME_BIN=/usr/bin/chromium \
    CHROMEDRIVER_PATH=/usr/bin/chromedriver \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIPE_PATH=/run/smartminer/miner_comm

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY *.py links.txt ./
COPY web/ ./web/
COPY json/pools.json json/config.json json/wallets.example.json json/coins.example.json ./json/

EXPOSE 4000
# healthcheck.py asks /healthz without loading the daemon's modules (about 0.2 CPU-s a check, against
# over 1 s for `main.py --healthcheck`): a check a minute must not cost the miner.
HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \
  CMD ["python", "healthcheck.py"]

# SIGTERM stops the manager within seconds; the worker container keeps mining.
STOPSIGNAL SIGTERM
# tini is PID 1 in every way this image runs (docker run, compose, Swarm): it reaps the orphans that
# Chromium leaves behind (crashpad handlers, helpers) and passes SIGTERM on. `-s`: when an init already
# is PID 1 (compose's `init: true`, `docker run --init`), tini registers as a subreaper instead.
ENTRYPOINT ["/usr/bin/tini", "-s", "--"]
CMD ["python", "main.py"]
