# JupyterLab with pg-labkit installed; PostgreSQL itself is the `db` service (docker-compose.yml).
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 learner

WORKDIR /lab
COPY pyproject.toml README.md ./
COPY labkit ./labkit
COPY sql ./sql
COPY datasets ./datasets
COPY exercises ./exercises
COPY notebooks ./notebooks
COPY scripts ./scripts
RUN pip install --no-cache-dir -e . \
 && python scripts/remove-incompatible-labextensions.py \
 && python scripts/jupyterlab-settings.py \
 && chown -R learner /lab

USER learner
ENV LABKIT_SERVER=url
EXPOSE 8888
