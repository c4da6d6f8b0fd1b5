// The NATS foundation under natter's domain folders: every subject, stream, consumer and bucket
// name (subjects.ts), the streams' configurations (topology.ts), the JSON codec, JetStream's error
// codes and the one compare-and-set helper, the acked publisher, dead letters, scans by subject,
// and the one consumer-worker base every worker runs on (worker.ts). It knows NATS, not chat.
export * from "./subjects.ts";
export { encodeJson, decodeJson, decodeJsonOrUndefined } from "./codec.ts";
export { isWrongLastSequence, isNotFound, isStreamFull } from "./errors.ts";
export { compareAndSet } from "./cas.ts";
export { kvOperation, scanFiltered } from "./jetstream.ts";
export { directBatch } from "./direct.ts";
export { JetStreamRequests, type Ack } from "./requests.ts";
export { connectRole } from "./connection.ts";
export { deployAuthorization, inboxPrefix, NATS_IDENTITY_ROLES, passwordVariable, renderAuthorization, type NatsIdentityRole, type NatsRole } from "./permissions.ts";
export { ConsumerWorker, backoffDelay, type Decoded, type Delivery, type Outcome, type SourceMsg } from "./worker.ts";
export { DEAD_HEADERS, DEAD_LETTER_WORKERS, readDeadLetters, replayDeadLetter, type DeadLetter, type DeadLetterWorker } from "./dead-letter.ts";
export { consumerLagGauge, deadLetterGauges, oldestUnackedAgeMs, persisterBacklogGauge } from "./consumer-lag.ts";
export {
  CONVERSATION_RESERVE,
  ensureTopology,
  expectedStreams,
  topologyOf,
  kvBucketConfig,
  streamMaxBytes,
  upsertStream,
  upsertConsumer,
  workerConsumerConfig,
} from "./topology.ts";
export { streamUsageGauge } from "./stream-usage.ts";
