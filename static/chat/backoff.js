/*
 * Exponential backoff with jitter: the wait before attempt n (0-based) is
 * randomised between `floor` and all of min(maxMs, minMs * 2^n).
 */

/* Reconnecting a socket (docs/protocol.md): 0.5 s doubling to 30 s, between half and all of it. */
export const RECONNECT = Object.freeze({ minMs: 500, maxMs: 30000, floor: 0.5 });

/* Resending a held message: 1 s doubling to 15 s, between 80 % and all of it. */
export const RETRY = Object.freeze({ minMs: 1000, maxMs: 15000, floor: 0.8 });

export function backoffCap(attempt, policy) {
  const n = Number.isFinite(attempt) && attempt > 0 ? Math.floor(attempt) : 0;
  return Math.min(policy.maxMs, policy.minMs * Math.pow(2, n));
}

/* Milliseconds to wait; `random` returns [0, 1) like Math.random. */
export function backoffDelay(attempt, policy, random = Math.random) {
  const cap = backoffCap(attempt, policy);
  return cap * policy.floor + random() * cap * (1 - policy.floor);
}
