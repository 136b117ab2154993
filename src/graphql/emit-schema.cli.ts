import { writeFileSync } from "node:fs";
import { printSchemaSdl, SCHEMA_FILE } from "./sdl.js";

// `npm run schema:emit`: write the SDL that the code defines to schema/schema.graphql.
writeFileSync(SCHEMA_FILE, await printSchemaSdl());
console.log(`wrote ${SCHEMA_FILE}`);
