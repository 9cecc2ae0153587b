// docs/producing-events.md's Node example: JSON events on the events topic, keyed by their ids, with kafkajs.
// Usage: node produce.mjs BOOTSTRAP TOPIC 'EVENT_JSON' ['EVENT_JSON' ...]
import { Kafka, logLevel } from "kafkajs";

const [bootstrap, topic, ...events] = process.argv.slice(2);
const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.WARN });
const producer = kafka.producer({ idempotent: true });
await producer.connect();
const messages = events.map((text) => ({ key: JSON.parse(text).id ?? null, value: text }));
await producer.send({ topic, acks: -1, messages });
await producer.disconnect();
