// The bottom layer: what every other folder may use and that knows nothing of them — the error
// catalogue and close codes, id validation, logging, metrics, a semaphore.
export { NatterError, asNatterError, CLOSE, type CloseKind, type ErrorCode } from "./errors.ts";
export { ID_PATTERN, isValidId, checkId } from "./ids.ts";
export { createLogger, MistakeLog, type Logger } from "./logger.ts";
export { createMetrics, scrapedGauge, type Metrics } from "./metrics.ts";
export { Semaphore } from "./semaphore.ts";
