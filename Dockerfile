# Curator as a container / Hugging Face Space (Docker SDK): non-root user 1000, port 7860.
#   docker build -t curator .                                  # weights download on first use
#   docker build --build-arg PREFETCH_WEIGHTS=1 -t curator .   # weights baked in: runs offline
#   docker run -p 7860:7860 -v curator-data:/data -e CURATOR_DATA_DIR=/data/curator curator
FROM python:3.11-slim

# build-essential: insightface has no wheel; libglib2.0-0: OpenCV. Not version-pinned: Debian drops
# superseded versions from its mirrors, so pins would break rebuilds; the base image fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 user
USER 1000
ENV HOME=/home/user \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_ANALYTICS_ENABLED=False \
    PORT=7860 \
    CURATOR_CACHE=/home/user/weights
WORKDIR /home/user/app

# Dependencies first, so code changes reuse this layer; the same script a local install runs.
COPY --chown=1000 requirements.txt ./
COPY --chown=1000 scripts/bootstrap.sh ./scripts/
RUN bash scripts/bootstrap.sh
ENV PATH=/home/user/app/.venv/bin:$PATH

COPY --chown=1000 . .

# Optional: download every scorer's weights (sha256-checked) into CURATOR_CACHE at build time.
ARG PREFETCH_WEIGHTS=0
RUN if [ "$PREFETCH_WEIGHTS" = 1 ]; then python -m curator weights --prefetch --cache-dir "$CURATOR_CACHE"; fi

# Databases, thumbnails, exports and uploads: /data/curator on a Space with persistent storage,
# else ~/.local/share/curator in the container (CURATOR_DATA_DIR moves them, e.g. to a volume).
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
