import { describe, expect, it } from "vitest";
import { periodsAt } from "../src/domain/enforcement/periods.js";

describe("tenant-local calendar periods", () => {
  it("uses the tenant's local date, not UTC", () => {
    // 2026-03-01T02:00Z is still Feb 28 in New York (UTC-5).
    const p = periodsAt(new Date("2026-03-01T02:00:00Z"), "America/New_York");
    expect(p.day).toBe("2026-02-28");
    expect(p.month).toBe("2026-02");
    expect(p.dayEndsAt.toISOString()).toBe("2026-03-01T05:00:00.000Z");
    expect(p.monthEndsAt.toISOString()).toBe("2026-03-01T05:00:00.000Z");
  });

  it("ends days at local midnight across a DST change", () => {
    // New York springs forward on 2026-03-08: that day is 23 hours long.
    const p = periodsAt(new Date("2026-03-08T12:00:00Z"), "America/New_York");
    expect(p.day).toBe("2026-03-08");
    expect(p.dayEndsAt.toISOString()).toBe("2026-03-09T04:00:00.000Z");
  });

  it("rolls the month at local midnight of the first in a positive offset zone", () => {
    const before = periodsAt(new Date("2026-01-31T14:59:59Z"), "Asia/Tokyo");
    const after = periodsAt(new Date("2026-01-31T15:00:00Z"), "Asia/Tokyo");
    expect(before.month).toBe("2026-01");
    expect(after.month).toBe("2026-02");
    expect(after.day).toBe("2026-02-01");
    expect(before.monthEndsAt.toISOString()).toBe("2026-01-31T15:00:00.000Z");
  });

  it("handles UTC and year end", () => {
    const p = periodsAt(new Date("2026-12-31T23:59:59Z"), "UTC");
    expect(p.day).toBe("2026-12-31");
    expect(p.monthEndsAt.toISOString()).toBe("2027-01-01T00:00:00.000Z");
  });

  it("reuses a zone's periods within the day but never across midnight, in either direction", () => {
    const tz = "Asia/Kolkata"; // UTC+05:30: local midnight is 18:30Z
    expect(periodsAt(new Date("2026-05-10T18:29:59Z"), tz).day).toBe("2026-05-10");
    expect(periodsAt(new Date("2026-05-10T18:30:00Z"), tz).day).toBe("2026-05-11");
    expect(periodsAt(new Date("2026-05-10T10:00:00Z"), tz).day).toBe("2026-05-10");
    expect(periodsAt(new Date("2026-05-11T18:29:59Z"), tz).day).toBe("2026-05-11");
  });
});
