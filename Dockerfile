# Curator as a container / Hugging Face Space (Docker SDK): non-root user 1000, port 7860.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    PORT=7860
WORKDIR /home/user/app

# Dependencies first, so code changes reuse this layer.
COPY --chown=user requirements.txt ./
COPY --chown=user scripts/bootstrap.sh ./scripts/
RUN bash scripts/bootstrap.sh
ENV PATH=/home/user/app/.venv/bin:$PATH

COPY --chown=user . .
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
