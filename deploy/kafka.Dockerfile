# The Kafka broker of docker-compose.yml: Apache Kafka 4.3.1 (the version `pipeline broker` runs), KRaft, configured
# by KAFKA_* environment variables as the official image is
# (BROKER_HEALTH_BOOTSTRAP is not KAFKA_-prefixed: the entry point turns every KAFKA_* variable into a property).
#
# BASE is the official apache/kafka image by default. `make images` passes a base built from Debian's packages and
# the Maven Central jars when no registry answers (deploy/debian/kafka.Dockerfile): same paths (/opt/kafka/bin,
# /opt/kafka/libs), same entry point (/etc/kafka/docker/run), same KAFKA_* / CLUSTER_ID variables.
ARG BASE=docker.io/apache/kafka:4.3.1
FROM ${BASE}
# Healthy = the broker answers a metadata request on the listener named by BROKER_HEALTH_BOOTSTRAP.
ENV BROKER_HEALTH_BOOTSTRAP=localhost:9092
HEALTHCHECK --interval=10s --timeout=20s --start-period=30s --retries=12 \
  CMD /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BROKER_HEALTH_BOOTSTRAP" --list >/dev/null
