import { Arg, Authorized, Ctx, ID, Mutation, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { formatUsd } from "../../domain/billing/money.js";
import type { Decision, LimitStatus } from "../../domain/enforcement/types.js";
import {
  CheckAndReserveInput,
  CommitInput,
  CommitResultType,
  CommitStatus,
  DecisionType,
  LimitStatusType,
  ReleaseResultType,
  type DecisionOutcome,
  type DecisionReason,
} from "../types/enforcement.types.js";
import { Priority, type LimitDimension } from "../types/enums.js";

/**
 * The domain's limit statuses are the GraphQL type field for field (LimitDimension's values are
 * its names): passed as they are, not copied, since a reserve answers a dozen of them.
 */
function asLimitStatusTypes(limits: LimitStatus[]): LimitStatusType[] {
  return limits as Array<LimitStatus & { dimension: LimitDimension }>;
}

/**
 * GraphQL's Int is 32-bit. A monthly quota or budget denied in the first days of a month
 * clears more than 2^31 ms (24.8 days) later, and an Int that does not fit fails the whole
 * answer: the gateway got INTERNAL_SERVER_ERROR instead of BUDGET_EXCEEDED. The wait is capped
 * (waiting 24.8 days or longer is the same advice); the binding limit's `resetAt` is exact.
 */
const MAX_RETRY_AFTER_MS = 2_147_483_647;

export function toDecisionType(d: Decision): DecisionType {
  return {
    outcome: d.outcome as DecisionOutcome,
    allowed: d.allowed,
    reason: d.reason as DecisionReason | null,
    message: d.message,
    retryAfterMs: d.retryAfterMs === null ? null : Math.min(d.retryAfterMs, MAX_RETRY_AFTER_MS),
    reservation: d.reservation
      ? {
          id: d.reservation.id,
          expiresAt: d.reservation.expiresAt,
          inputTokens: d.reservation.inputTokens,
          outputTokens: d.reservation.outputTokens,
          costUsd: formatUsd(d.reservation.costNano),
        }
      : null,
    directives: d.directives
      ? { model: d.directives.model, maxInputTokens: d.directives.maxInputTokens, maxOutputTokens: d.directives.maxOutputTokens, priority: d.directives.priority as Priority }
      : null,
    limits: asLimitStatusTypes(d.limits),
    tenantId: d.tenantId,
    keyId: d.keyId,
  };
}

/** The gateway's hot path. Denials come back as Decision data; errors are for bad input and faults. */
@Resolver()
export class EnforcementResolver {
  @Authorized("GATEWAY", "ADMIN")
  @Mutation(() => DecisionType, { description: "May this request run, and with which limits? Reserves its tokens and cost when allowed." })
  async checkAndReserve(@Arg("input", () => CheckAndReserveInput) input: CheckAndReserveInput, @Ctx() ctx: GraphQLContext): Promise<DecisionType> {
    const d = await ctx.services.enforcement.checkAndReserve(
      {
        apiKey: input.apiKey,
        route: input.route,
        model: input.model,
        inputTokens: input.inputTokens,
        maxOutputTokens: input.maxOutputTokens ?? null,
        idempotencyKey: input.idempotencyKey ?? null,
        subject: input.subject ?? null,
        priority: input.priority ?? Priority.NORMAL,
        tools: input.tools ?? [],
        clientAddress: input.clientAddress ?? null,
        promptFingerprint: input.promptFingerprint ?? null,
      },
      ctx.actor!,
    );
    return toDecisionType(d);
  }

  @Authorized("GATEWAY", "ADMIN")
  @Mutation(() => CommitResultType, { description: "Record what the request really used. Returns after the ledger row is durable. Idempotent." })
  async commit(@Arg("input", () => CommitInput) input: CommitInput, @Ctx() ctx: GraphQLContext): Promise<CommitResultType> {
    const r = await ctx.services.enforcement.commit(
      { reservationId: input.reservationId, inputTokens: input.inputTokens, outputTokens: input.outputTokens, status: input.status ?? CommitStatus.SUCCEEDED },
      ctx.actor!,
    );
    return {
      reservationId: r.reservationId,
      inputTokens: r.inputTokens,
      outputTokens: r.outputTokens,
      costUsd: formatUsd(r.costNano),
      overage: r.overage,
      replayed: r.replayed,
      limits: asLimitStatusTypes(r.limits),
    };
  }

  @Authorized("GATEWAY", "ADMIN")
  @Mutation(() => ReleaseResultType, { description: "Cancel an unused reservation and return its holds." })
  async release(@Arg("reservationId", () => ID) reservationId: string, @Ctx() ctx: GraphQLContext): Promise<ReleaseResultType> {
    return ctx.services.enforcement.release(reservationId, ctx.actor!);
  }
}
