import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { printSchemaSdl, SCHEMA_FILE } from "../../src/graphql/sdl.js";
import { MIGRATIONS_DIR } from "../../src/storage/postgres/db.js";

/**
 * Generated files that are committed must match the code that generates them, or reviewers
 * read one API/database and production runs another.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

describe("generated artifacts match the code", () => {
  it("schema/schema.graphql is the SDL the code defines, byte for byte", async () => {
    const fromCode = await printSchemaSdl();
    const committed = readFileSync(SCHEMA_FILE, "utf8");
    expect(fromCode.length).toBeGreaterThan(0);
    expect(committed, "schema/schema.graphql is stale: run `npm run schema:emit` and commit the result").toBe(fromCode);
  });

  it("npm start, the Docker image and the benchmark give node the same flags", () => {
    // The benchmark measures the service as it runs; a flag added to one and not the others
    // (the V8 heap and GC flags, README: Performance) would make its figures another build's.
    const flagsOf = (command: string) => command.slice(0, command.indexOf("--import")).split(/\s+/).filter((t) => t.startsWith("--")).map((t) => t.replace(/=\$\{MAX_HEAP_MB:-256\}/, "=256"));
    const start = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).scripts.start as string;
    const cmd = /^CMD \["sh", "-c", "exec (node [^"]*)"\]$/m.exec(readFileSync(path.join(ROOT, "Dockerfile"), "utf8"))![1]!;
    const bench = /const nodeFlags = args\["node-flags"\] \? [^:]*: \[(.*)\];/.exec(readFileSync(path.join(ROOT, "bench/run.ts"), "utf8"))![1]!;
    const benchFlags = [...bench.matchAll(/"(--[^"]+)"|`(--[^`$]+)\$\{process\.env\.MAX_HEAP_MB \?\? "256"\}`/g)].map((m) => m[1] ?? `${m[2]}256`);
    expect(flagsOf(start)).toEqual(["--max-old-space-size=256", "--max-semi-space-size=32", "--no-allocation-site-pretenuring"]);
    expect(flagsOf(cmd)).toEqual(flagsOf(start));
    expect(benchFlags).toEqual(flagsOf(start));
  });

  it("README.md documents every configuration variable, and only those", () => {
    // The variables are the keys of config.ts's EnvSchema (two-space-indented UPPER_CASE keys).
    const source = readFileSync(path.join(ROOT, "src/config/config.ts"), "utf8");
    const start = source.indexOf("const EnvSchema = z.object({");
    expect(start, "src/config/config.ts defines EnvSchema").toBeGreaterThan(-1);
    const body = source.slice(start, source.indexOf("\n})", start));
    const variables = [...body.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    expect(variables).toContain("DATABASE_URL");

    // Only the Configuration section: other tables (e.g. decision reasons) also hold UPPER_CASE names.
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("\n## ", readme.indexOf("## Configuration") + 1));
    expect(section.length, "README.md has a Configuration section").toBeGreaterThan(20);
    const documented = [...section.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);
    expect(variables.filter((v) => !documented.includes(v)), "add a row to README.md's Configuration table").toEqual([]);
    expect(documented.filter((v) => !variables.includes(v)), "README.md documents variables config.ts no longer reads").toEqual([]);
  });

  describe("drizzle migrations", () => {
    let tmp = "";
    afterAll(() => {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it("drizzle-kit generate against the current schema adds no migration", () => {
      // Made here, not at collection time, so a filtered run that skips this test leaves nothing.
      tmp = mkdtempSync(path.join(os.tmpdir(), "drizzle-check-"));
      // Generate into a copy, so the check never touches the committed folder.
      cpSync(MIGRATIONS_DIR, path.join(tmp, "drizzle"), { recursive: true });
      const sqlFiles = () => readdirSync(path.join(tmp, "drizzle")).filter((f) => f.endsWith(".sql")).sort();
      const before = sqlFiles();
      const journal = JSON.parse(readFileSync(path.join(tmp, "drizzle/meta/_journal.json"), "utf8"));
      expect(before).toHaveLength(journal.entries.length);

      // drizzle-kit resolves `out` against its working directory (an absolute `out` breaks it),
      // so it runs inside the temp dir with the schema path made absolute.
      const projectConfig = readFileSync(path.join(ROOT, "drizzle.config.ts"), "utf8");
      const schemaRel = /schema:\s*"([^"]+)"/.exec(projectConfig)?.[1];
      expect(schemaRel, "drizzle.config.ts names its schema").toBeDefined();
      const config = { dialect: "postgresql", schema: path.resolve(ROOT, schemaRel!), out: "./drizzle" };
      writeFileSync(path.join(tmp, "drizzle.config.ts"), `export default ${JSON.stringify(config)};\n`);

      const bin = path.join(path.dirname(createRequire(import.meta.url).resolve("drizzle-kit")), "bin.cjs");
      const r = spawnSync(process.execPath, [bin, "generate", "--config", path.join(tmp, "drizzle.config.ts")], {
        cwd: tmp,
        encoding: "utf8",
        // No stdin: if drizzle-kit wants to ask (e.g. "is this column renamed?"), it must not hang CI.
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 60_000,
      });
      const output = `${r.stdout}\n${r.stderr}`;
      // drizzle-kit exits 0 even when it fails to read the folder, so success is read from its words.
      expect(r.status, output).toBe(0);
      const added = sqlFiles().filter((f) => !before.includes(f));
      expect(added, `the drizzle schema changed without a migration: run \`npm run db:generate\` and commit drizzle/\n${output}`).toEqual([]);
      expect(output, `drizzle-kit did not confirm the schema is unchanged; run \`npm run db:generate\`\n${output}`).toMatch(
        /No schema changes/,
      );
    });
  });
});
