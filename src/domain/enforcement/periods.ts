/**
 * Calendar periods in the tenant's time zone. A day or month quota resets at local midnight;
 * usage counts against the period in which it was reserved.
 */
export interface Periods {
  day: string; // YYYY-MM-DD, tenant-local
  month: string; // YYYY-MM, tenant-local
  dayEndsAt: Date; // the next local midnight
  monthEndsAt: Date; // local midnight of the 1st of next month
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

interface LocalParts {
  y: number;
  mo: number;
  d: number;
  h: number;
  mi: number;
  s: number;
}

function localParts(at: Date, timeZone: string): LocalParts {
  const p: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(at)) {
    if (part.type !== "literal") p[part.type] = Number(part.value);
  }
  return { y: p.year!, mo: p.month!, d: p.day!, h: p.hour!, mi: p.minute!, s: p.second! };
}

/** Offset (ms) of `timeZone` from UTC at instant `at`. */
function offsetMs(at: Date, timeZone: string): number {
  const l = localParts(at, timeZone);
  const asUtc = Date.UTC(l.y, l.mo - 1, l.d, l.h, l.mi, l.s);
  return asUtc - Math.floor(at.getTime() / 1000) * 1000;
}

/** The UTC instant of local wall-clock midnight on y-mo-d in `timeZone` (DST-safe). */
export function localMidnight(y: number, mo: number, d: number, timeZone: string): Date {
  const guess = Date.UTC(y, mo - 1, d);
  // Two passes settle the offset across a DST change near midnight.
  let t = guess - offsetMs(new Date(guess), timeZone);
  t = guess - offsetMs(new Date(t), timeZone);
  return new Date(t);
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/**
 * Periods change only at local midnight, so the answer for a time zone is reused until its
 * day ends (Intl formatting is one of the costlier steps of a reserve otherwise).
 */
const cached = new Map<string, { from: number; p: Periods }>();

export function periodsAt(at: Date, timeZone: string): Periods {
  const t = at.getTime();
  const hit = cached.get(timeZone);
  if (hit && t >= hit.from && t < hit.p.dayEndsAt.getTime()) return hit.p;
  const p = computePeriods(at, timeZone);
  // Valid from this day's local midnight (the previous day's end) to its own end.
  const l = localParts(at, timeZone);
  cached.set(timeZone, { from: localMidnight(l.y, l.mo, l.d, timeZone).getTime(), p });
  return p;
}

function computePeriods(at: Date, timeZone: string): Periods {
  const l = localParts(at, timeZone);
  const next = new Date(Date.UTC(l.y, l.mo - 1, l.d + 1));
  const nextMonth = new Date(Date.UTC(l.y, l.mo, 1));
  return {
    day: `${pad(l.y, 4)}-${pad(l.mo)}-${pad(l.d)}`,
    month: `${pad(l.y, 4)}-${pad(l.mo)}`,
    dayEndsAt: localMidnight(next.getUTCFullYear(), next.getUTCMonth() + 1, next.getUTCDate(), timeZone),
    monthEndsAt: localMidnight(nextMonth.getUTCFullYear(), nextMonth.getUTCMonth() + 1, 1, timeZone),
  };
}

export function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
