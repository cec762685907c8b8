// Estimating the server clock from the page's, as PROTOCOL.md "Clock offset" says and the
// native viewer does (client/src/control/clock_sync.rs): each ping/pong gives an offset whose
// error is at most half its round trip, so the estimate follows the sample with the smallest
// round trip among the last 16.

export interface Exchange {
  /** Page clock when the ping left (t0). */
  client_send: number;
  server_receive: number;
  server_send: number;
  /** Page clock when the pong arrived (t3). */
  client_receive: number;
}

/** server clock − page clock. */
export function offsetOf(e: Exchange): number {
  return Math.trunc((e.server_receive - e.client_send + (e.server_send - e.client_receive)) / 2);
}

export function rttOf(e: Exchange): number {
  return Math.max(0, e.client_receive - e.client_send - Math.max(0, e.server_send - e.server_receive));
}

/** Recent samples the estimate chooses from. */
export const WINDOW = 16;

export class ClockSync {
  private samples: { offset: number; rtt: number }[] = [];
  private coarse: number | undefined;

  /** A first estimate from the welcome's timestamp (error up to one round trip). */
  setCoarse(serverTimeUs: number, clientReceiveUs: number): void {
    this.coarse = serverTimeUs - clientReceiveUs;
  }

  /** The round trip of the latest exchange (the page's stand-in for QUIC's smoothed RTT,
   * which WebTransport does not expose). */
  lastRttUs: number | undefined;

  add(e: Exchange): void {
    this.lastRttUs = rttOf(e);
    if (this.samples.length === WINDOW) this.samples.shift();
    this.samples.push({ offset: offsetOf(e), rtt: rttOf(e) });
  }

  /** server clock − page clock in µs, if known. */
  offsetUs(): number | undefined {
    let best: { offset: number; rtt: number } | undefined;
    for (const s of this.samples) if (best === undefined || s.rtt < best.rtt) best = s;
    return best?.offset ?? this.coarse;
  }

  minRttUs(): number | undefined {
    return this.samples.length ? Math.min(...this.samples.map((s) => s.rtt)) : undefined;
  }

  get sampleCount(): number {
    return this.samples.length;
  }

  /** A page clock reading on the server's clock. */
  toServer(clientUs: number): number | undefined {
    const o = this.offsetUs();
    return o === undefined ? undefined : Math.max(0, clientUs + o);
  }
}
