# The service image: Node 20, production dependencies only, running the TypeScript sources
# through tsx exactly as `npm start` does (no build step to drift from what tests run).
FROM node:20-slim

WORKDIR /app
ENV NODE_ENV=production

COPY package.json package-lock.json ./
# Install scripts stay off, as in development (package.json "allowScripts" denies them):
# nothing the service runs needs them, and npm ci stays reproducible.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

COPY tsconfig.json ./
COPY src ./src
COPY drizzle ./drizzle
COPY schema ./schema

# DATABASE_URL and REDIS_URL are expected (see docker-compose.yml); without them the service
# would try the embedded PGlite/redis-server mode, which this image is not meant for.
ENV HOST=0.0.0.0 PORT=4000
EXPOSE 4000
USER node

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:4000/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# This is what `npm start` runs (tsx src/main.ts), minus the wrappers. Under `npm start`,
# `docker stop` delivers SIGTERM to npm, which passes it to its `sh -c`, which dies without
# passing it on: node never drains and is killed at the grace period. (Checked by hand:
# SIGTERM to `npm start` left tsx and node running, orphaned.) Run directly, node gets
# SIGTERM itself and drains; compose's `init: true` puts tini in front to reap children.
# `exec` replaces the shell, so node is still the process that gets the signal; the shell is
# only there to read MAX_HEAP_MB (V8's old-space limit, as in `npm start`).
CMD ["sh", "-c", "exec node --max-old-space-size=${MAX_HEAP_MB:-256} --max-semi-space-size=32 --no-allocation-site-pretenuring --import tsx src/main.ts"]
