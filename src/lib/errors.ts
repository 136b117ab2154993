/**
 * One enum of error codes and one base class for every failure a caller may see.
 * Expected business outcomes (a denied reserve) are NOT errors: they are values.
 * Only the GraphQL layer (src/graphql/errors.ts) turns these into GraphQL errors;
 * anything that is not a DomainError is masked there as INTERNAL_SERVER_ERROR.
 */
export enum ErrorCode {
  BAD_USER_INPUT = "BAD_USER_INPUT",
  UNAUTHENTICATED = "UNAUTHENTICATED",
  FORBIDDEN = "FORBIDDEN",
  NOT_FOUND = "NOT_FOUND",
  CONFLICT = "CONFLICT",
  BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE",
  INTERNAL = "INTERNAL_SERVER_ERROR",
}

export interface DomainErrorOptions {
  retryable?: boolean;
  context?: Record<string, unknown>;
  cause?: unknown;
}

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: DomainErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "DomainError";
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.context = opts.context ?? {};
  }
}

/** A field of the caller's input is wrong; `field` is the input path (e.g. "input.timezone"). */
export function badInput(field: string, message: string, context: Record<string, unknown> = {}): DomainError {
  return new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}`, { context: { field, ...context } });
}

/** Unknown ids and ids the caller may not see read the same: the message never says which. */
export function notFound(entity: string, id: string): DomainError {
  return new DomainError(ErrorCode.NOT_FOUND, `${entity} ${id} not found`, { context: { entity, id } });
}

export function forbidden(message = "not allowed for this credential"): DomainError {
  return new DomainError(ErrorCode.FORBIDDEN, message);
}

export function unauthenticated(message = "missing or invalid credentials"): DomainError {
  return new DomainError(ErrorCode.UNAUTHENTICATED, message);
}

export function conflict(message: string, context: Record<string, unknown> = {}): DomainError {
  return new DomainError(ErrorCode.CONFLICT, message, { context });
}

export function backendUnavailable(message: string, cause?: unknown): DomainError {
  return new DomainError(ErrorCode.BACKEND_UNAVAILABLE, message, { retryable: true, cause });
}

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}
