import type { AuditLog } from "../abuse/audit.js";
import type { Clock } from "../../lib/clock.js";
import { badInput, notFound } from "../../lib/errors.js";
import type { Actor, Model, ModelPrice } from "../tenancy/types.js";
import { assertAdmin, type ListPage } from "../tenancy/tiers.service.js";
import { parseModelFields, parseModelName, type ModelInput } from "../tenancy/validation.js";
import { estimateCost, type CostEstimate, type EstimateRequest } from "./estimate.js";
import { formatUsd, parsePricePerMTok } from "./money.js";

/** The writes of one upsert, all inside one transaction that serializes model writes. */
export interface ModelWriter {
  get(name: string): Promise<Model | null>;
  insertModel(m: { name: string; contextWindow: number; downgradeTo: string | null; at: Date }): Promise<void>;
  updateModel(name: string, m: { contextWindow: number; downgradeTo: string | null; at: Date }): Promise<void>;
  /** Appends to the price history; "EXISTS" when a price with that effectiveFrom is already there. */
  insertPrice(name: string, price: ModelPrice): Promise<"OK" | "EXISTS">;
}

export interface ModelRepository {
  get(name: string): Promise<Model | null>;
  /** Ordered by name, names strictly after `page.after`, each with its full price history. */
  list(page: ListPage): Promise<Model[]>;
  /**
   * Runs `work` in one transaction; model writes are serialized (so two upserts cannot build a
   * downgrade cycle between them) and a throw rolls everything back.
   */
  write<T>(work: (w: ModelWriter) => Promise<T>): Promise<T>;
}

export interface ModelsServiceOptions {
  repo: ModelRepository;
  audit: AuditLog;
  invalidation: { publish(kind: "model", id: string): Promise<void> };
  clock: Clock;
}

/** Longest downgrade chain followed when checking for cycles; real chains are a few links. */
const MAX_DOWNGRADE_CHAIN = 100;

/**
 * Models and their versioned prices (nano-USD per token). A price change is a new row with its
 * own effectiveFrom, never an edit: the ledger's past charges and any audit of them keep the
 * price they were made at. Every role may read models; only ADMIN writes them.
 */
export class ModelsService {
  constructor(private readonly opts: ModelsServiceOptions) {}

  /** Plain read for the hot-path cache and other services. */
  getModel(name: string): Promise<Model | null> {
    return this.opts.repo.get(name);
  }

  async model(_actor: Actor, name: string): Promise<Model> {
    const model = await this.opts.repo.get(name);
    if (!model) throw notFound("model", name);
    return model;
  }

  models(_actor: Actor, page: ListPage): Promise<Model[]> {
    return this.opts.repo.list(page);
  }

  /**
   * Creates the model or changes the fields `input` names. Prices come as a pair and add a
   * version effective from `effectiveFrom` (default: now); a past effectiveFrom is refused
   * because it would rewrite what earlier requests should have cost.
   */
  async upsertModel(actor: Actor, input: ModelInput): Promise<Model> {
    assertAdmin(actor);
    const fields = parseModelFields(input);
    const now = this.opts.clock.now();
    const price = this.parsePrice(input, fields.effectiveFrom ?? null, now);
    const name = fields.name;
    if (fields.downgradeTo === name) throw badInput("input.downgradeTo", "cannot be the model itself");

    const { model, created } = await this.opts.repo.write(async (w) => {
      const current = await w.get(name);
      const contextWindow = fields.contextWindow ?? current?.contextWindow;
      if (contextWindow === undefined) throw badInput("input.contextWindow", "is required when creating a model");
      const downgradeTo = fields.downgradeTo === undefined ? (current?.downgradeTo ?? null) : fields.downgradeTo;
      if (fields.downgradeTo) await this.checkDowngrade(w, name, fields.downgradeTo);

      if (current) await w.updateModel(name, { contextWindow, downgradeTo, at: now });
      else await w.insertModel({ name, contextWindow, downgradeTo, at: now });
      if (price && (await w.insertPrice(name, price)) === "EXISTS") {
        throw badInput("input.effectiveFrom", `${name} already has a price effective from ${price.effectiveFrom.toISOString()}; prices are never rewritten`);
      }
      return { model: (await w.get(name))!, created: current === null };
    });

    await this.opts.invalidation.publish("model", name);
    await this.opts.audit.record({
      actor: { kind: actor.kind, id: actor.id },
      action: created ? "model.create" : "model.update",
      tenantId: null,
      targetType: "model",
      targetId: name,
      details: {
        contextWindow: model.contextWindow,
        downgradeTo: model.downgradeTo,
        ...(price
          ? {
              price: {
                inputUsdPerMTok: formatUsd(price.inputNano * 1_000_000n),
                outputUsdPerMTok: formatUsd(price.outputNano * 1_000_000n),
                effectiveFrom: price.effectiveFrom.toISOString(),
              },
            }
          : {}),
      },
    });
    return model;
  }

  /** Estimates at the current time with the price in force now. Open to every role. */
  async estimateCost(req: EstimateRequest): Promise<CostEstimate> {
    const name = parseModelName(req.model, "model");
    return estimateCost(await this.opts.repo.get(name), req, this.opts.clock.now());
  }

  private parsePrice(input: ModelInput, effectiveFrom: Date | null, now: Date): ModelPrice | null {
    const hasIn = input.inputPriceUsdPerMTok !== undefined && input.inputPriceUsdPerMTok !== null;
    const hasOut = input.outputPriceUsdPerMTok !== undefined && input.outputPriceUsdPerMTok !== null;
    if (hasIn !== hasOut) {
      const missing = hasIn ? "outputPriceUsdPerMTok" : "inputPriceUsdPerMTok";
      throw badInput(`input.${missing}`, "is required with the other price: a price is an input and output pair");
    }
    if (!hasIn) {
      if (effectiveFrom !== null) throw badInput("input.effectiveFrom", "dates a new price; give inputPriceUsdPerMTok and outputPriceUsdPerMTok with it");
      return null;
    }
    const inputNano = parsePricePerMTok(input.inputPriceUsdPerMTok!, "input.inputPriceUsdPerMTok");
    const outputNano = parsePricePerMTok(input.outputPriceUsdPerMTok!, "input.outputPriceUsdPerMTok");
    if (effectiveFrom !== null && effectiveFrom.getTime() < now.getTime()) {
      throw badInput("input.effectiveFrom", "is in the past; a new price never rewrites history (omit it to take effect now)");
    }
    return { inputNano, outputNano, effectiveFrom: effectiveFrom ?? now };
  }

  /** The target must exist and must not lead back to `name`, or the enforcement path would loop. */
  private async checkDowngrade(w: ModelWriter, name: string, target: string): Promise<void> {
    const chain = [name, target];
    let next: Model | null = await w.get(target);
    if (!next) throw badInput("input.downgradeTo", `no model named ${JSON.stringify(target)}`);
    for (let i = 0; i < MAX_DOWNGRADE_CHAIN && next.downgradeTo !== null; i++) {
      chain.push(next.downgradeTo);
      if (next.downgradeTo === name) throw badInput("input.downgradeTo", `would make a downgrade cycle: ${chain.join(" → ")}`);
      next = await w.get(next.downgradeTo);
      if (!next) break;
    }
  }
}
