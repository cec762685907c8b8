// Waits between reconnection attempts, as the native viewer's client/src/control/backoff.rs:
// 250 ms doubling to 5 s, each ±20% at random so the viewers of a restarted server do not
// all come back at the same instant.

export const FIRST_MS = 250;
export const MAX_MS = 5000;

export class Backoff {
  private nextMs = FIRST_MS;
  constructor(private readonly random: () => number = Math.random) {}

  /** Starts over (a new outage). */
  reset(): void {
    this.nextMs = FIRST_MS;
  }

  nextWaitMs(): number {
    const wait = this.nextMs * (0.8 + 0.4 * this.random());
    this.nextMs = Math.min(this.nextMs * 2, MAX_MS);
    return wait;
  }
}
