# One image for every Portside process: web, gateway, worker and beat (see docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MFT_DATA_DIR=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends gnupg ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /data --uid 10001 portside

WORKDIR /app
COPY requirements.txt requirements-ldap.txt ./
RUN pip install --no-cache-dir -r requirements.txt
# Directory (LDAP) logins: `docker build --build-arg WITH_LDAP=1 .` (python-ldap compiles).
ARG WITH_LDAP=0
RUN if [ "$WITH_LDAP" = "1" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libldap2-dev libsasl2-dev \
        && pip install --no-cache-dir -r requirements-ldap.txt \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY . .

USER portside
VOLUME ["/data"]
EXPOSE 8000 2121 2990 30000-30099
CMD ["gunicorn", "mft.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
