import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(opts: { level: string; name?: string }): Logger {
  return pino({
    name: opts.name ?? "llm-usage",
    level: opts.level,
    // Secrets must never reach a log line, even by accident through a logged object.
    redact: {
      paths: ["apiKey", "secret", "token", "authorization", "*.apiKey", "*.secret", "*.token", "*.authorization", "headers.authorization"],
      censor: "[redacted]",
    },
  });
}
