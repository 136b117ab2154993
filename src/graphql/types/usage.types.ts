import { Field, GraphQLISODateTime, ID, ObjectType, registerEnumType } from "type-graphql";
import { DecimalScalar } from "../scalars.js";
import { formatUsd } from "../../domain/billing/money.js";
import type { UsageFigures, UsageGroup, UsageReport } from "../../domain/usage/types.js";

export enum UsageGroupBy {
  DAY = "DAY",
  MONTH = "MONTH",
  KEY = "KEY",
  MODEL = "MODEL",
  ROUTE = "ROUTE",
}
registerEnumType(UsageGroupBy, {
  name: "UsageGroupBy",
  description: "How usage is broken down. DAY and MONTH are calendar periods in the tenant's time zone.",
  valuesConfig: {
    DAY: { description: "Tenant-local day (YYYY-MM-DD) the request's reservation counted against." },
    MONTH: { description: "Tenant-local month (YYYY-MM)." },
    KEY: { description: "API key." },
    MODEL: { description: "Model charged (after any degradation to a cheaper model)." },
    ROUTE: { description: "Route, e.g. chat.completions." },
  },
});

/** Sums of ledger rows. Counts and token sums are strings: they can exceed 2^31. */
@ObjectType("UsageFigures")
export class UsageFiguresType {
  @Field(() => String) inputTokens!: string;
  @Field(() => String) outputTokens!: string;
  @Field(() => String) totalTokens!: string;
  @Field(() => DecimalScalar, { description: "Charged cost in USD, exact (9 decimals)." }) costUsd!: string;
  @Field(() => String, { description: "Committed requests, any status." }) requests!: string;
  @Field(() => String) failedRequests!: string;
  @Field(() => String) cancelledRequests!: string;
  @Field(() => String, { description: "Committed requests whose actual usage exceeded the reservation (charged in full)." })
  overageRequests!: string;
  @Field(() => String, { description: "Reservations never committed or released, whose holds expired." })
  expiredReservations!: string;
}

@ObjectType("UsageGroup", { description: "One group of a usage report: the grouping fields asked for are set, the others are null." })
export class UsageGroupType extends UsageFiguresType {
  @Field(() => String, { nullable: true, description: "Tenant-local day, YYYY-MM-DD." }) day!: string | null;
  @Field(() => String, { nullable: true, description: "Tenant-local month, YYYY-MM." }) month!: string | null;
  @Field(() => ID, { nullable: true }) keyId!: string | null;
  @Field(() => String, { nullable: true }) model!: string | null;
  @Field(() => String, { nullable: true }) route!: string | null;
}

@ObjectType("UsageReport", {
  description:
    "A tenant's usage over the tenant-local days that overlap [from, to): exact at the moment of the query (rollups plus the ledger rows not rolled up yet).",
})
export class UsageReportType {
  @Field(() => ID) tenantId!: string;
  @Field(() => String, { description: "The tenant's IANA time zone, which defines its days and months." }) timezone!: string;
  @Field(() => GraphQLISODateTime) from!: Date;
  @Field(() => GraphQLISODateTime) to!: Date;
  @Field(() => String, { description: "First tenant-local day covered (the one containing from)." }) fromDay!: string;
  @Field(() => String, { description: "Last tenant-local day covered (the one containing the last instant before to)." }) toDay!: string;
  @Field(() => [UsageGroupBy]) groupBy!: UsageGroupBy[];
  @Field(() => UsageFiguresType) totals!: UsageFiguresType;
  @Field(() => [UsageGroupType]) groups!: UsageGroupType[];
  @Field(() => String, { description: "Ledger rows up to this id were read from the rollups, later ones from the ledger itself." })
  rolledUpTo!: string;
}

function figuresView(f: UsageFigures): UsageFiguresType {
  return {
    inputTokens: f.inputTokens.toString(),
    outputTokens: f.outputTokens.toString(),
    totalTokens: (f.inputTokens + f.outputTokens).toString(),
    costUsd: formatUsd(f.costNano),
    requests: f.requests.toString(),
    failedRequests: f.failedRequests.toString(),
    cancelledRequests: f.cancelledRequests.toString(),
    overageRequests: f.overageRequests.toString(),
    expiredReservations: f.expiredReservations.toString(),
  };
}

function groupView(g: UsageGroup): UsageGroupType {
  return { ...figuresView(g), day: g.day, month: g.month, keyId: g.keyId, model: g.model, route: g.route };
}

export function usageReportView(r: UsageReport): UsageReportType {
  return {
    tenantId: r.tenantId,
    timezone: r.timezone,
    from: r.from,
    to: r.to,
    fromDay: r.fromDay,
    toDay: r.toDay,
    groupBy: r.groupBy as UsageGroupBy[],
    totals: figuresView(r.totals),
    groups: r.groups.map(groupView),
    rolledUpTo: r.rolledUpTo.toString(),
  };
}
