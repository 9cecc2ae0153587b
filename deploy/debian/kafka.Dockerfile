# An Apache Kafka base built from Debian's Java 17 and the Maven Central jars that `pipeline broker` runs, for hosts
# where the official apache/kafka image cannot be pulled. It keeps that image's contract: /opt/kafka/bin and
# /opt/kafka/libs, the entry point /etc/kafka/docker/run, KAFKA_* variables turned into server properties, and
# CLUSTER_ID for the KRaft storage format. The build context (deploy/images.sh) holds libs/ next to this dir's files.
ARG DEBIAN=localhost/pipeline-debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && useradd --create-home --uid 1000 appuser \
 && mkdir -p /opt/kafka/config /etc/kafka/docker /var/lib/kafka/data \
 && chown appuser /opt/kafka/config /var/lib/kafka/data
COPY libs /opt/kafka/libs
COPY kafka/run /etc/kafka/docker/run
COPY kafka/kafka-run-class.sh kafka/kafka-topics.sh kafka/kafka-storage.sh /opt/kafka/bin/
COPY kafka/log4j2.properties /opt/kafka/config/log4j2.properties
USER appuser
EXPOSE 9092
CMD ["/etc/kafka/docker/run"]
