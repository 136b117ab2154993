import type { Config } from "./config/config.js";
import { createLogger, type Logger } from "./lib/logger.js";
import { openDatabase, type Database } from "./storage/postgres/db.js";
import { createHotPathRedis, createSubscriberRedis, subscribeOnEveryConnection, whenReady, type RedisClient } from "./storage/redis/client.js";
import { InvalidationBus } from "./storage/redis/invalidation.js";
import { systemClock, type Clock } from "./lib/clock.js";
import type { Db } from "./storage/postgres/db.js";
import { PostgresAuditLog } from "./storage/postgres/audit.repository.js";
import type { AuditLog } from "./domain/abuse/audit.js";
import { startEmbeddedRedis, type EmbeddedRedis } from "./storage/redis/embedded.js";
import { BearerAuthenticator, type Authenticator } from "./auth/authenticator.js";
import { ApiKeyVerifier } from "./auth/api-key-verifier.js";
import { ApiKeyService } from "./domain/tenancy/api-keys.service.js";
import { CredentialService } from "./domain/tenancy/credentials.service.js";
import { PostgresApiKeyRepository } from "./storage/postgres/api-keys.repository.js";
import { PostgresCredentialRepository } from "./storage/postgres/credentials.repository.js";
import { EnforcementService } from "./domain/enforcement/enforcement.service.js";
import { PolicyCache } from "./domain/enforcement/policy-cache.js";
import { PostgresPolicyLoader } from "./storage/postgres/policy.repository.js";
import { PostgresLedgerWriter } from "./storage/postgres/ledger.writer.js";
import { PostgresReservationArchive } from "./storage/postgres/reservation-archive.js";
import { RedisCounterStore } from "./storage/redis/counter-store.js";
import { RedisClock } from "./storage/redis/redis-clock.js";
import { TiersService } from "./domain/tenancy/tiers.service.js";
import { TenantsService } from "./domain/tenancy/tenants.service.js";
import { ModelsService } from "./domain/billing/models.service.js";
import { PostgresTierRepository } from "./storage/postgres/tiers.repository.js";
import { PostgresTenantRepository } from "./storage/postgres/tenants.repository.js";
import { PostgresModelRepository } from "./storage/postgres/models.repository.js";
import { UsageService } from "./domain/usage/usage.service.js";
import { RollupService } from "./domain/usage/rollup.service.js";
import { QuotaLifecycleService } from "./domain/usage/quota-lifecycle.service.js";
import { ReconciliationService } from "./domain/usage/reconciliation.service.js";
import { PostgresUsageReader } from "./storage/postgres/usage-report.js";
import { PostgresRollupStore } from "./storage/postgres/usage-rollups.js";
import { PostgresQuotaStateStore } from "./storage/postgres/usage-quota-state.js";
import { PostgresReconciliationStore } from "./storage/postgres/usage-reconciliation.js";
import { RedisQuotaCounters } from "./storage/redis/usage-counters.js";
import { JobSystem } from "./jobs/job-system.js";
import { PostgresOutbox } from "./storage/postgres/outbox.repository.js";
import { PostgresWebhookRepository } from "./storage/postgres/webhooks.repository.js";
import { RedisQuotaEventChannel } from "./storage/redis/quota-event-channel.js";
import { QuotaEventFeed } from "./domain/events/event-feed.js";
import { QuotaEventService } from "./domain/events/quota-events.service.js";
import { WebhookService } from "./domain/events/webhooks.service.js";
import { WebhookSecretBox } from "./domain/events/webhook-secrets.js";
import { WebhookTargetPolicy } from "./domain/events/webhook-targets.js";
import { WebhookDeliverer } from "./domain/events/webhook-delivery.js";
import { HttpWebhookTransport, systemResolver } from "./jobs/webhook-sender.js";
import { WebhookDispatcher } from "./jobs/webhook-dispatcher.js";
import { OutboxRelay } from "./jobs/relay.js";
import { buildApiSchema } from "./graphql/schema.js";
import { createApiServer, type ApiServer } from "./graphql/server.js";
import { RedisAbuseStore } from "./storage/redis/abuse-store.js";
import { PostgresAbuseRepository } from "./storage/postgres/abuse.repository.js";
import { AbuseStateCache } from "./domain/abuse/state-cache.js";
import { BreakerService } from "./domain/abuse/breaker.service.js";
import { AnomalyService } from "./domain/abuse/anomaly.service.js";
import { FailedAuthThrottle } from "./domain/abuse/auth-throttle.js";
import { UsageObserver } from "./domain/abuse/observer.js";
import { AbuseMonitor } from "./domain/abuse/monitor.js";
import { AuditService } from "./domain/abuse/audit.service.js";
import { AbuseJobs } from "./jobs/abuse.jobs.js";
import { ServiceMetrics } from "./metrics/service-metrics.js";
import { instrumentCounterStore } from "./metrics/instrumented-counter-store.js";
import { operationMetrics } from "./metrics/operation-metrics.plugin.js";
import { outboxLagReader } from "./metrics/outbox-lag.js";
import { metricsRoute } from "./metrics/metrics-route.js";

/** The long-lived services resolvers and jobs use. Built only here. */
export interface Services {
  auth: Authenticator;
  audit: AuditLog;
  apiKeys: ApiKeyService;
  credentials: CredentialService;
  /** Tenant API key check for the enforcement hot path (cached; no Postgres in steady state). */
  apiKeyVerifier: ApiKeyVerifier;
  enforcement: EnforcementService;
  ledger: PostgresLedgerWriter;
  policyCache: PolicyCache;
  /** Spend breakers, anomalies, failed-auth throttling and the audit trail (issue #5). */
  abuse: AbuseServices;
  /** Usage reports: rollups plus the ledger rows not rolled up yet (exact at any moment). */
  usage: UsageService;
  /** BullMQ queues (every process) and, with WORKERS_ENABLED, the quota lifecycle's workers and schedulers. */
  jobs: JobSystem;
  /** Event producers write here, in the transaction of the event's cause: `outbox.append(tx, event)`. */
  outbox: PostgresOutbox;
  /** quotaEvents(after, first) and subscription authorization. */
  quotaEvents: QuotaEventService;
  /** This replica's ordered, gap-checked stream of published events, for subscriptions. */
  eventFeed: QuotaEventFeed;
  webhooks: WebhookService;
  /** Operator CRUD of tiers, tenants, models and prices; getTier/getTenant/getModel are plain reads. */
  tiers: TiersService;
  tenants: TenantsService;
  models: ModelsService;
  // ── shared infrastructure services receive in their options ──
  db: Db;
  redis: RedisClient;
  invalidation: InvalidationBus;
  clock: Clock;
  config: Config;
  logger: Logger;
  /** Prometheus series (/metrics); `metrics.jobs` is for background workers to report runs. */
  metrics: ServiceMetrics;
}

export interface AbuseServices {
  breakers: BreakerService;
  anomalies: AnomalyService;
  audit: AuditService;
  /** One evaluation pass (the abuse job runs it on the workers; tests may call it directly). */
  monitor: AbuseMonitor;
  /** The hot path's buffered observations; `flush()` writes them now. */
  observer: UsageObserver;
  /** This replica's cached breaker and degradation state; `refresh()` re-reads it now. */
  state: AbuseStateCache;
  throttle: FailedAuthThrottle;
}

export interface App {
  config: Config;
  logger: Logger;
  database: Database;
  redis: RedisClient;
  redisUrl: string;
  services: Services;
  server: ApiServer;
  /** Listen on config.http (port 0 = any); returns the bound port. */
  listen(): Promise<number>;
  /** Graceful stop: stop accepting, finish in-flight work, flush, close connections. */
  stop(): Promise<void>;
}

/** The composition root: the only place long-lived objects are constructed and wired. */
export async function compose(config: Config, opts: { logger?: Logger } = {}): Promise<App> {
  const logger = opts.logger ?? createLogger({ level: config.log.level });
  const cleanups: Array<() => Promise<unknown>> = [];

  const database = await openDatabase(config.postgres);
  cleanups.push(() => database.close());
  await database.migrate();
  const metrics = new ServiceMetrics({ defaultMetrics: true, outboxLag: outboxLagReader(database.db) });

  let embedded: EmbeddedRedis | null = null;
  let redisUrl = config.redis.url;
  if (!redisUrl && config.redis.clusterNodes.length === 0) {
    embedded = await startEmbeddedRedis(config.redis.dataDir);
    redisUrl = embedded.url;
    logger.info({ url: redisUrl }, "started embedded redis-server");
  }
  const redisSettings = { ...config.redis, url: redisUrl ?? "" };
  const redis = createHotPathRedis(redisSettings);
  redis.on("error", (err) => {
    metrics.redisConnectionError("hot-path");
    logger.warn({ err: err.message }, "redis connection error");
  });
  cleanups.push(async () => redis.disconnect());
  if (embedded) cleanups.push(() => embedded!.stop());
  if (!(await whenReady(redis, 5_000))) logger.warn("redis not ready after 5 s; starting anyway (reserves fail closed until it is)");

  const subscriber = createSubscriberRedis(redisSettings);
  subscriber.on("error", (err) => {
    metrics.redisConnectionError("subscriber");
    logger.warn({ err: err.message }, "redis subscriber error");
  });
  cleanups.push(async () => subscriber.disconnect());
  const invalidation = new InvalidationBus(redis, subscriber, config.redis.keyPrefix, logger);
  await invalidation.start();
  const clock = systemClock;
  const db = database.db;

  // ── services (each gets its dependencies as one options object) ──
  const audit = new PostgresAuditLog(db);

  const apiKeyRepository = new PostgresApiKeyRepository(db);
  const credentialRepository = new PostgresCredentialRepository(db);
  const apiKeys = new ApiKeyService({ repository: apiKeyRepository, audit, invalidation, clock, apiKeyPrefix: config.auth.apiKeyPrefix });
  const credentials = new CredentialService({ repository: credentialRepository, audit, invalidation, clock, apiKeyPrefix: config.auth.apiKeyPrefix });
  const apiKeyVerifier = new ApiKeyVerifier({
    repository: apiKeyRepository,
    invalidation,
    apiKeyPrefix: config.auth.apiKeyPrefix,
    cacheTtlMs: config.cacheTtlMs,
  });
  cleanups.push(async () => apiKeyVerifier.close());
  const auth = new BearerAuthenticator({
    bootstrapAdminToken: config.auth.bootstrapAdminToken,
    apiKeyPrefix: config.auth.apiKeyPrefix,
    credentials: credentialRepository,
    invalidation,
    cacheTtlMs: config.cacheTtlMs,
    oidc: config.auth.oidc,
    logger,
  });
  cleanups.push(async () => auth.close());
  await auth.start();

  // The hot path: cached policy, Redis counters, group-committed ledger, Redis's clock.
  const redisClock = new RedisClock(redis, logger);
  await redisClock.start();
  cleanups.push(async () => redisClock.stop());
  const policyCache = new PolicyCache(new PostgresPolicyLoader(db), { ttlMs: config.cacheTtlMs, maxEntries: 50_000 });
  invalidation.onInvalidate((m) => {
    if (m.kind === "tier" || m.kind === "tenant" || m.kind === "model" || m.kind === "all") policyCache.invalidate(m.kind, m.id);
  });
  const ledger = new PostgresLedgerWriter(db, { lingerMs: config.ledger.lingerMs, maxBatch: config.ledger.maxBatch, logger });
  ledger.onBatch = metrics.ledgerBatch;
  ledger.onDurable = metrics.ledgerDurable;
  // Runs before the database closes (cleanups run in reverse): every acknowledged commit is durable.
  cleanups.push(() => ledger.flush());
  const archive = new PostgresReservationArchive(db, { lingerMs: 20, maxBatch: 1_000, logger });
  cleanups.push(() => archive.flush());
  // ── abuse controls (issue #5): the hot path only reads in-process caches and buffers what it
  // saw; breakers and anomalies are evaluated by the abuse job from commit-time Redis counters ──
  const abuseChannel = `${config.redis.keyPrefix}abuse:state`;
  const abuseStore = new RedisAbuseStore(redis, { channel: abuseChannel, recordKeepMs: 30 * 86_400_000 });
  const abuseRepository = new PostgresAbuseRepository(db);
  const abuseBucketMs = config.abuse.bucketSeconds * 1000;
  const abuseState = new AbuseStateCache({ source: abuseStore, clock: redisClock, logger, globalHalfOpenOneIn: config.abuse.globalBreaker.halfOpenOneIn });
  // Redis may still be coming up: the periodic refresh catches up, and until then nothing is cached as open.
  await abuseState.refresh().catch((err) => logger.warn({ err: (err as Error).message }, "abuse state not loaded yet"));
  abuseState.start(config.abuse.stateRefreshMs);
  cleanups.push(async () => abuseState.stop());
  subscriber.on("message", (channel) => {
    if (channel === abuseChannel) abuseState.refreshSoon();
  });
  // A breaker opened or closed while the subscriber was away: reload the state once back.
  await subscribeOnEveryConnection(subscriber, abuseChannel, logger, () => abuseState.refreshSoon());
  const breakers = new BreakerService({
    store: abuseStore,
    repo: abuseRepository,
    policy: policyCache,
    clock: redisClock,
    logger,
    bucketMs: abuseBucketMs,
    global: config.abuse.globalBreaker,
    onStateChanged: () => abuseState.refreshSoon(),
  });
  const anomalies = new AnomalyService({
    store: abuseStore,
    repo: abuseRepository,
    policy: policyCache,
    keys: apiKeys,
    clock: redisClock,
    logger,
    bucketMs: abuseBucketMs,
    onStateChanged: () => abuseState.refreshSoon(),
  });
  const authThrottle = new FailedAuthThrottle({
    store: abuseStore,
    settings: {
      windowMs: config.abuse.authThrottle.windowSeconds * 1000,
      maxPerSource: config.abuse.authThrottle.maxFailuresPerSource,
      maxPerPrefix: config.abuse.authThrottle.maxFailuresPerPrefix,
      blockMs: config.abuse.authThrottle.blockSeconds * 1000,
    },
    apiKeyPrefix: config.auth.apiKeyPrefix,
    logger,
    onBurst: (b) => void anomalies.recordAuthBurst(b).catch((err) => logger.warn({ err: (err as Error).message }, "failed-auth burst could not be recorded")),
  });
  const usageObserver = new UsageObserver({
    store: abuseStore,
    audit: abuseRepository,
    clock: redisClock,
    logger,
    bucketMs: abuseBucketMs,
    apiKeyPrefix: config.auth.apiKeyPrefix,
    // Long enough for the longest window a tier may set (a day) if no evaluator trims meanwhile.
    keepMs: 26 * 3_600_000,
  });
  usageObserver.start(config.abuse.flushIntervalMs);
  // Runs before Redis and Postgres close (cleanups run in reverse): buffered denials are not lost.
  cleanups.push(() => usageObserver.stop());
  const abuseMonitor = new AbuseMonitor({
    store: abuseStore,
    breakers,
    anomalies,
    policy: policyCache,
    clock: redisClock,
    logger,
    activeForMs: 3_600_000,
    leaseMs: Math.max(30_000, 3 * config.abuse.evaluateIntervalMs),
  });
  const abuse: AbuseServices = {
    breakers,
    anomalies,
    audit: new AuditService(abuseRepository),
    monitor: abuseMonitor,
    observer: usageObserver,
    state: abuseState,
    throttle: authThrottle,
  };

  // Set once the job system exists (below): commits before that have nobody to tell.
  let jobs: JobSystem | null = null;
  const enforcement = new EnforcementService({
    keys: apiKeyVerifier,
    policy: policyCache,
    counters: instrumentCounterStore(new RedisCounterStore(redis), metrics),
    ledger,
    archive,
    clock: redisClock,
    logger,
    metrics: metrics.enforcement,
    storeTimeoutMs: config.redis.commandTimeoutMs,
    globalBreakerOpen: () => abuseState.globalBreakerOpen(),
    tenantBreakerGate: (tenantId) => abuseState.tenantBreakerGate(tenantId),
    keyDegradation: (keyId) => abuseState.keyDegradation(keyId),
    authThrottle,
    observer: usageObserver,
    onCommitted: (info) => jobs?.notifyCommitted(info),
  });
  // ── quota lifecycle: rollups, thresholds, degradation, period resets, sweeper, reconciliation ──
  const usage = new UsageService({ reader: new PostgresUsageReader(db) });
  const rollups = new RollupService({ store: new PostgresRollupStore(db, { logger }), logger });
  const quota = new QuotaLifecycleService({ store: new PostgresQuotaStateStore(db), clock: redisClock, logger });
  const reconciliation = new ReconciliationService({
    counters: new RedisQuotaCounters(redis),
    store: new PostgresReconciliationStore(db),
    clock: redisClock,
    logger,
  });
  const jobSystem = new JobSystem({
    redis: redisSettings,
    logger,
    rollups,
    quota,
    reconciliation,
    sweepExpired: () => enforcement.sweepExpired(),
    operatorChanges: invalidation,
    onJobFinished: (queue, job, ms, ok) => metrics.jobs.record(queue, job, ms, ok),
  });
  // Closed before the ledger flushes and the connections close (cleanups run in reverse), so a
  // running job (a sweep appending EXPIRY rows) finishes first.
  cleanups.push(() => jobSystem.close());
  await jobSystem.start();
  jobs = jobSystem;
  if (config.workersEnabled) {
    await jobSystem.startWorkers();
  }

  const tierRepository = new PostgresTierRepository(db);
  const tenantRepository = new PostgresTenantRepository(db);
  const tiers = new TiersService({ repo: tierRepository, tenants: tenantRepository, audit, invalidation, clock });
  const tenants = new TenantsService({ repo: tenantRepository, tiers: tierRepository, audit, invalidation, clock });
  const models = new ModelsService({ repo: new PostgresModelRepository(db), audit, invalidation, clock });
  if (config.workersEnabled) {
    const abuseJobs = new AbuseJobs({
      redis: redisSettings,
      monitor: abuseMonitor,
      intervalMs: config.abuse.evaluateIntervalMs,
      logger,
      onJobFinished: (queue, job, ms, ok) => metrics.jobs.record(queue, job, ms, ok),
    });
    await abuseJobs.start();
    cleanups.push(() => abuseJobs.close());
  }

  // ── quota events: outbox → relay → subscriptions (Redis pub/sub) and webhooks ──
  const outbox = new PostgresOutbox(db, { clock });
  const eventSubscriber = createSubscriberRedis(redisSettings);
  eventSubscriber.on("error", (err) => logger.warn({ err: err.message }, "redis event subscriber error"));
  cleanups.push(async () => eventSubscriber.disconnect());
  const eventChannel = new RedisQuotaEventChannel(redis, eventSubscriber, config.redis.keyPrefix, logger);
  await eventChannel.start();
  const eventFeed = new QuotaEventFeed({ source: eventChannel, reader: outbox, logger });
  await eventFeed.start();
  cleanups.push(() => eventFeed.stop());
  const quotaEvents = new QuotaEventService({ reader: outbox });
  const webhookRepository = new PostgresWebhookRepository(db);
  const webhookSecrets = new WebhookSecretBox(config.webhooks.secretKey);
  const webhookTargets = new WebhookTargetPolicy({ allowPrivate: config.webhooks.allowPrivateTargets, resolve: systemResolver });
  const webhooks = new WebhookService({ repository: webhookRepository, secrets: webhookSecrets, targets: webhookTargets, audit, clock });
  if (config.workersEnabled) {
    const deliverer = new WebhookDeliverer({
      store: webhookRepository,
      transport: new HttpWebhookTransport(webhookTargets),
      secrets: webhookSecrets,
      clock,
      timeoutMs: config.webhooks.timeoutMs,
      logger,
    });
    const dispatcher = new WebhookDispatcher({ store: webhookRepository, deliverer, logger, timeoutMs: config.webhooks.timeoutMs });
    const relay = new OutboxRelay({ store: outbox, publisher: eventChannel, logger, onDeliveries: () => dispatcher.kick() });
    relay.start();
    dispatcher.start();
    // Stopped first (cleanups run in reverse): an in-flight batch or attempt finishes and is recorded.
    cleanups.push(() => dispatcher.stop(), () => relay.stop());
  }

  const services: Services = {
    auth, audit, apiKeys, credentials, apiKeyVerifier, enforcement, ledger, policyCache,
    tiers, tenants, models, abuse,
    outbox, quotaEvents, eventFeed, webhooks,
    usage, jobs: jobSystem,
    db, redis, invalidation, clock, config, logger, metrics,
  };

  const schema = await buildApiSchema();
  const operations = operationMetrics(metrics.operationDuration);
  const server = await createApiServer({
    schema,
    services,
    logger,
    introspection: config.graphql.introspection,
    maxDepth: config.graphql.maxDepth,
    maxComplexity: config.graphql.maxComplexity,
    maxBodyBytes: config.http.maxBodyBytes,
    jit: config.graphql.jit,
    plugins: [operations.plugin],
    observeOperation: operations.observe,
    routes: { "/metrics": metricsRoute(metrics, (err) => logger.warn({ err }, "metrics collection failed")) },
  });

  let stopped = false;
  return {
    config,
    logger,
    database,
    redis,
    redisUrl: redisUrl ?? "",
    services,
    server,
    listen: () => server.listen(config.http.port, config.http.host),
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
      for (const c of cleanups.reverse()) await c().catch((err) => logger.warn({ err }, "cleanup failed"));
    },
  };
}
