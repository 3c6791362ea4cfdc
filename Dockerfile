# One image for the three services; compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml requirements.lock ./
COPY contracts ./contracts
COPY services ./services
RUN pip install -c requirements.lock . \
    && useradd --system --no-create-home app
USER app

CMD ["python", "-m", "services.billing"]
