import { idRandomBase62 } from "../../lib/ids.js";

/**
 * Reservation ids carry their tenant (`res_<tenantCore>-<random>`), so commit and release can
 * find the tenant's Redis slot without a lookup table. The random part is 20 base62
 * characters (~119 bits): ids cannot be guessed, and another tenant's id reads like an unknown one.
 */
export function newReservationId(tenantId: string): string {
  const core = tenantId.slice(tenantId.indexOf("_") + 1);
  return `res_${core}-${idRandomBase62(20)}`;
}

const RE = /^res_([0-9A-Za-z]{8,64})-([0-9A-Za-z]{20})$/;

/** The tenant id inside a reservation id, or null when the id is not one this service issued. */
export function tenantOfReservation(reservationId: string): string | null {
  const m = RE.exec(reservationId);
  return m ? `ten_${m[1]}` : null;
}
