# One image for every service: `pipeline run <service> --app MODULE:ATTR`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 pipeline
# not root: the services need no privilege (PIPELINE_HOME, for instance slots, is in the user's home)
USER pipeline
ENV PIPELINE_BOOTSTRAP_SERVERS=kafka:9092 PIPELINE_HEALTH_PORT=9400
EXPOSE 9400
ENTRYPOINT ["pipeline"]
