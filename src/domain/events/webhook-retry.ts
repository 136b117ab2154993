/**
 * When a failed webhook attempt is retried: exponential backoff (30 s, doubling) capped at 6 h,
 * each delay jittered by ±20 % so receivers that recover at once are not hit by every sender in
 * lockstep. Nominal total ≈ 26.5 h over 14 attempts (with jitter between ≈ 21 h and ≈ 32 h):
 * about a day, as the Standard Webhooks guidance suggests, long enough to ride out a receiver's
 * overnight outage. After the last attempt the delivery is FAILED and shows so in
 * `webhookDeliveries`; an operator can see every attempt there.
 */
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Nominal delay after failed attempt n (index n - 1). */
export const WEBHOOK_RETRY_DELAYS_MS: readonly number[] = [
  30 * SECOND,
  1 * MINUTE,
  2 * MINUTE,
  4 * MINUTE,
  8 * MINUTE,
  16 * MINUTE,
  32 * MINUTE,
  64 * MINUTE,
  128 * MINUTE,
  256 * MINUTE,
  6 * HOUR,
  6 * HOUR,
  6 * HOUR,
];

export const WEBHOOK_MAX_ATTEMPTS = WEBHOOK_RETRY_DELAYS_MS.length + 1;
export const WEBHOOK_RETRY_JITTER = 0.2;

/**
 * Delay before the attempt after `failedAttempt` (1-based), or null when that was the last.
 * `random` is injectable (a value in [0, 1)) so the schedule is testable exactly.
 */
export function webhookRetryDelayMs(failedAttempt: number, random: () => number = Math.random): number | null {
  if (!Number.isInteger(failedAttempt) || failedAttempt < 1 || failedAttempt >= WEBHOOK_MAX_ATTEMPTS) return null;
  const nominal = WEBHOOK_RETRY_DELAYS_MS[failedAttempt - 1]!;
  const factor = 1 - WEBHOOK_RETRY_JITTER + 2 * WEBHOOK_RETRY_JITTER * random();
  return Math.round(nominal * factor);
}
