# The service image: Node 20, production dependencies only, started with `npm start` (tsx runs
# the TypeScript sources directly, so there is no build step to drift from what tests run).
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

CMD ["npm", "start"]
