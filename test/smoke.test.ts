import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/app.js";
import { errorCode } from "./support/client.js";

describe("service boots on real Postgres and Redis", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t?.close());

  it("answers the bootstrap admin and refuses anonymous callers", async () => {
    const me = await t.admin.ok(`{ viewer { role } }`);
    expect(me.viewer.role).toBe("ADMIN");
    const anon = await t.client().request(`{ viewer { role } }`);
    expect(errorCode(anon)).toBe("UNAUTHENTICATED");
  });
});
