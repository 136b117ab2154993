import { defineConfig } from "drizzle-kit";

// drizzle-kit reads this for `npm run db:generate`; generation needs no database connection.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/storage/postgres/schema/index.ts",
  out: "./drizzle",
  dbCredentials: { url: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" },
});
