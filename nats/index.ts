// The NATS foundation under natter's domain folders: every subject, stream, consumer and bucket
// name (subjects.ts), the streams' configurations (topology.ts), the JSON codec, JetStream's error
// codes and the one compare-and-set helper, the acked publisher, dead letters, scans by subject,
// and the one consumer-worker base every worker runs on (worker.ts). It knows NATS, not chat.
export * from "./subjects.ts";
export { encodeJson, decodeJson, decodeJsonOrUndefined } from "./codec.ts";
export { JsErrorCode, jsErrorCode, isWrongLastSequence, isNotFound } from "./errors.ts";
export { compareAndSet, type CompareAndSetOptions } from "./cas.ts";
export { kvOperation, scanFiltered, type KvOperation } from "./jetstream.ts";
export { AckedPublisher, type Ack } from "./acked-publisher.ts";
export { deadLetter, DEAD_HEADERS } from "./dead-letter.ts";
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
