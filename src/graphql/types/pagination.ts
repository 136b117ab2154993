import { ClassType, Field, Int, ObjectType, ArgsType } from "type-graphql";
import { badInput } from "../../lib/errors.js";

/**
 * Cursor pagination shared by every list: `first` (1..200, default 50) and an opaque `after`.
 * Cursors are base64url of the last item's sort key, so pages are stable under inserts.
 */
@ObjectType("PageInfo")
export class PageInfo {
  @Field(() => Boolean) hasNextPage!: boolean;
  @Field(() => String, { nullable: true }) endCursor!: string | null;
}

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true, defaultValue: 50, description: "Page size, 1 to 200." })
  first?: number;
  @Field(() => String, { nullable: true, description: "The endCursor of the previous page." })
  after?: string | null;
}

export const MAX_PAGE_SIZE = 200;

export interface PageRequest {
  first: number;
  /** The decoded sort key of the last item seen, or null for the first page. */
  after: string | null;
}

export function encodeCursor(key: string): string {
  return Buffer.from(key, "utf8").toString("base64url");
}

/** Validates `first` and decodes `after`; a malformed cursor is BAD_USER_INPUT, not an empty page. */
export function pageRequest(args: { first?: number | null; after?: string | null }): PageRequest {
  const first = args.first ?? 50;
  if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE_SIZE) throw badInput("first", `must be between 1 and ${MAX_PAGE_SIZE}`);
  if (args.after === undefined || args.after === null || args.after === "") return { first, after: null };
  if (args.after.length > 512 || !/^[A-Za-z0-9_-]+$/.test(args.after)) throw badInput("after", "is not a cursor this API issued");
  return { first, after: Buffer.from(args.after, "base64url").toString("utf8") };
}

export interface Page<T> {
  items: T[];
  hasNextPage: boolean;
  endCursor: string | null;
}

/**
 * Repositories fetch `first + 1` rows ordered by the sort key; this trims the extra row and
 * derives `hasNextPage` from it.
 */
export function toPage<T>(rows: T[], first: number, keyOf: (t: T) => string): Page<T> {
  const hasNextPage = rows.length > first;
  const items = hasNextPage ? rows.slice(0, first) : rows;
  const last = items[items.length - 1];
  return { items, hasNextPage, endCursor: last === undefined ? null : encodeCursor(keyOf(last)) };
}

/** `@ObjectType` connection class for items of `itemType`: `{ nodes, pageInfo }`. */
export function Connection<T extends object>(name: string, itemType: ClassType<T>) {
  @ObjectType(name)
  class ConnectionClass {
    @Field(() => [itemType]) nodes!: T[];
    @Field(() => PageInfo) pageInfo!: PageInfo;
  }
  return ConnectionClass;
}

export function toConnection<T>(page: Page<T>): { nodes: T[]; pageInfo: PageInfo } {
  return { nodes: page.items, pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.endCursor } };
}
