/** A minimal GraphQL-over-HTTP client for tests: real HTTP, real JSON, nothing mocked. */
export interface GraphQLResponse<T = any> {
  status: number;
  data: T | null;
  errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, any> }>;
  headers: Headers;
}

export class GraphQLClient {
  constructor(
    readonly url: string,
    readonly token?: string,
  ) {}

  async request<T = any>(query: string, variables?: Record<string, unknown>, headers: Record<string, string> = {}): Promise<GraphQLResponse<T>> {
    const res = await fetch(this.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        ...headers,
      },
      body: JSON.stringify({ query, variables }),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = { errors: [{ message: text }] };
    }
    return { status: res.status, data: json.data ?? null, errors: json.errors, headers: res.headers };
  }

  /** Like request, but throws when the response has errors: for setup steps that must work. */
  async ok<T = any>(query: string, variables?: Record<string, unknown>): Promise<T> {
    const r = await this.request<T>(query, variables);
    if (r.errors?.length || r.data === null) {
      throw new Error(`GraphQL request failed (${r.status}): ${JSON.stringify(r.errors)}`);
    }
    return r.data;
  }
}

/** The first error's code, for assertions. */
export function errorCode(r: GraphQLResponse): string | undefined {
  return r.errors?.[0]?.extensions?.code;
}
