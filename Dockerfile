# canarytrace: the mail server for the canary domains, the analysis worker and the
# dashboard in one process (`canary serve`). Configuration is by CANARY_* variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CANARY_DATA_DIR=/var/lib/canarytrace \
    CANARY_SMTP_HOST=0.0.0.0 \
    CANARY_HTTP_HOST=0.0.0.0

WORKDIR /opt/canarytrace
COPY pyproject.toml README.md ./
COPY canary ./canary
COPY mailbox ./mailbox
COPY dashboard ./dashboard
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/canarytrace --create-home canary

USER canary
VOLUME ["/var/lib/canarytrace"]
EXPOSE 2525 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["canary", "healthcheck"]
CMD ["canary", "serve"]
