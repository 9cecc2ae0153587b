# One image for every service: `pipeline run <service> --app MODULE:ATTR`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY examples ./examples
RUN pip install --no-cache-dir .
ENV PIPELINE_BOOTSTRAP_SERVERS=kafka:9092
ENTRYPOINT ["pipeline"]
