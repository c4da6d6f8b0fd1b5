// The NATS foundation under natter's domain folders: every subject, stream, consumer and bucket
// name (subjects.ts), the streams' configurations (topology.ts), the JSON codec, JetStream's error
// codes and the one compare-and-set helper, the acked publisher, dead letters, scans by subject,
// and the one consumer-worker base every worker runs on (worker.ts). It knows NATS, not chat.
export * from "./subjects.ts";
export { encodeJson, decodeJson, decodeJsonOrUndefined } from "./codec.ts";
export { JsErrorCode, jsErrorCode, isWrongLastSequence, isNotFound } from "./errors.ts";
export { compareAndSet, type CompareAndSetOptions } from "./cas.ts";
export { kvOperation, scanFiltered, type KvOperation } from "./jetstream.ts";
export { JetStreamRequests, type Ack, type DirectGet, type PublishOptions } from "./requests.ts";
export { connectNats, coalesceWrites, type NatsConnectOptions } from "./connection.ts";
export { ConsumerWorker, backoffDelay, type Decoded, type Delivery, type FailureDecision, type Outcome, type WorkerDeps, type WorkerSpec, type WorkerStats } from "./worker.ts";
export { deadLetter, DEAD_HEADERS, type DeadLetterWorker } from "./dead-letter.ts";
export { consumerLagGauge } from "./consumer-lag.ts";
export {
  ensureTopology,
  expectedStreams,
  topologyOf,
  conversationStreamConfig,
  inboxStreamConfig,
  deadLetterStreamConfig,
  kvBucketConfig,
  upsertStream,
  upsertConsumer,
  workerConsumerConfig,
  type KvBucketOptions,
} from "./topology.ts";
