#!/usr/bin/env bash
# Run a Kafka main class on the image's classpath, as the distribution's script of the same name does.
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -Dlog4j2.level=WARN -cp '/opt/kafka/libs/*' "$@"
