# One image for every service: `pipeline run <service> --app MODULE:ATTR`.
#
# BASE is any image with Python 3.11+ and `python3 -m venv`: the official python image by default;
# `make images` passes a base built from Debian's packages when no registry answers (deploy/images.sh).
ARG BASE=docker.io/library/python:3.11-slim
FROM ${BASE}
ENV VIRTUAL_ENV=/opt/pipeline PATH=/opt/pipeline/bin:$PATH PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The dependencies first, in a layer of their own: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
# A TLS-inspecting proxy's CA bundle reaches pip as a build secret (deploy/images.sh passes the host's PIP_CERT): it
# is used for the download and not stored in the image.
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && python3 -m venv /opt/pipeline \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir --progress-bar off -r /tmp/requirements.txt && rm /tmp/requirements.txt \
 && useradd --create-home --uid 10001 pipeline
COPY schemas ./schemas
COPY pipeline ./pipeline
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && pip install --no-cache-dir --progress-bar off --no-deps . && rm -rf build pipeline.egg-info
# The example app; your own app is mounted or copied under /app (on PYTHONPATH), see README "Deploy".
COPY examples ./examples
# not root: the services need no privilege (PIPELINE_HOME, for instance slots, is in the user's home)
USER pipeline
ENV PYTHONPATH=/app PIPELINE_BOOTSTRAP_SERVERS=kafka:9092 PIPELINE_HEALTH_PORT=9400
EXPOSE 9400
# Ready = the service joined its group and restored its state (/readyz on PIPELINE_HEALTH_PORT).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['PIPELINE_HEALTH_PORT'], timeout=4)"]
ENTRYPOINT ["pipeline"]
