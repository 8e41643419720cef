/** Timing settings of the status machine and liveness sweep, in milliseconds. */
export interface Timings {
  /** Interval a runtime is told to heartbeat at (the hint is jittered ±10%). */
  readonly heartbeatIntervalMs: number;
  /** ONLINE/DEGRADED go OFFLINE after this long without a heartbeat. */
  readonly offlineAfterMs: number;
  /** A register failure keeps the workspace DEGRADED for this long. */
  readonly registerFailureWindowMs: number;
  /** PROVISIONING goes FAILED after this long. */
  readonly provisionTimeoutMs: number;
  /** Transitions older than this are compacted out of the log. */
  readonly retentionMs: number;
  /** After a rotation, the previous workspace tokens keep working this long. */
  readonly tokenRotationOverlapMs: number;
}

export const DEFAULT_TIMINGS: Timings = {
  heartbeatIntervalMs: 10_000,
  offlineAfterMs: 40_000,
  registerFailureWindowMs: 5 * 60_000,
  provisionTimeoutMs: 10 * 60_000,
  retentionMs: 7 * 24 * 3_600_000,
  tokenRotationOverlapMs: 60_000,
};

/** Error-rate thresholds: at or above DEGRADE an ONLINE workspace degrades; below RECOVER a DEGRADED one may recover. */
export const ERROR_RATE_DEGRADE = 0.5;
export const ERROR_RATE_RECOVER = 0.1;
