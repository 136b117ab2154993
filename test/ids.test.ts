import { describe, expect, it } from "vitest";
import { idRandomBase62, isIdOf, newId } from "../src/lib/ids.js";
import { newReservationId, tenantOfReservation } from "../src/domain/enforcement/reservation-id.js";

describe("ids from the pooled random bytes", () => {
  it("are well formed, unbiased in alphabet use and never repeat across many pool refills", () => {
    const ids = Array.from({ length: 20_000 }, () => newId("tenant"));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every((id) => isIdOf("tenant", id))).toBe(true);
    // 20,000 × 16 characters drawn from 62: every character appears, none far off its share.
    const counts = new Map<string, number>();
    for (const id of ids) for (const c of id.slice(4)) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    const share = (20_000 * 16) / 62;
    for (const n of counts.values()) expect(Math.abs(n - share) / share).toBeLessThan(0.1);
    expect(idRandomBase62(1)).toMatch(/^[0-9A-Za-z]$/);
  });

  it("reservation ids still name their tenant", () => {
    const tenant = newId("tenant");
    const r = newReservationId(tenant);
    expect(tenantOfReservation(r)).toBe(tenant);
    expect(newReservationId(tenant)).not.toBe(r);
  });
});
