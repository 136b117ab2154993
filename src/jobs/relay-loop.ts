import type { Logger } from "../lib/logger.js";

/**
 * A worker loop for the relay and the webhook dispatcher: run a step; when it found work, run
 * again at once (drain a backlog); otherwise sleep `idleMs` or until `kick()`. A failing step is
 * logged and retried after `idleMs`, so a database outage neither spins nor kills the loop.
 * `stop()` waits for the running step, so shutdown never abandons a half-done step it could
 * have finished.
 */
export class WorkLoop {
  private running = false;
  private current: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly name: string,
    private readonly step: () => Promise<boolean>,
    private readonly opts: { idleMs: number; logger: Logger },
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.current = this.run();
  }

  /** Run the next step now instead of at the end of the idle wait. */
  kick(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.kick();
    await this.current;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let busy = false;
      try {
        busy = await this.step();
      } catch (err) {
        this.opts.logger.warn({ err: (err as Error).message, loop: this.name }, "background step failed; retrying");
      }
      if (busy || !this.running) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, this.opts.idleMs);
      });
      if (this.timer) clearTimeout(this.timer);
      this.wake = null;
      this.timer = null;
    }
  }
}
