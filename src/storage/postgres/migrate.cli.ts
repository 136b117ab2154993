import { loadConfig } from "../../config/config.js";
import { openDatabase } from "./db.js";

// `npm run db:migrate`: apply pending migrations to DATABASE_URL (or the embedded database).
const config = loadConfig(process.env);
const database = await openDatabase(config.postgres);
await database.migrate();
await database.close();
console.log(`migrations applied (${database.kind})`);
