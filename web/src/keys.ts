// The keys, exactly as the native viewer's (client/src/control/commands.rs for_key, HELP).
// Q / Esc (quit) have no meaning in a page and are not bound.

export type Command =
  | { kind: "quality"; position: number } // 0-based position in the ladder
  | { kind: "quality-up" }
  | { kind: "quality-down" }
  | { kind: "auto" }
  | { kind: "audio-bitrate-up" }
  | { kind: "audio-bitrate-down" }
  | { kind: "toggle-pause" }
  | { kind: "toggle-mute" }
  | { kind: "toggle-stats" }
  | { kind: "toggle-help" };

export const HELP: ReadonlyArray<readonly [string, string]> = [
  ["1-9", "rendition 1-9 of the ladder"],
  ["Up / +", "higher quality"],
  ["Down / -", "lower quality"],
  ["A", "automatic quality"],
  ["[ / ]", "audio bitrate down / up"],
  ["M", "mute / unmute"],
  ["Space", "pause / resume"],
  ["S", "stats overlay"],
  ["H / F1", "this help"],
];

/** The command for a KeyboardEvent's `key` (and `code` for the number pad). */
export function forKey(key: string, code = ""): Command | undefined {
  if (/^[1-9]$/.test(key)) return { kind: "quality", position: Number(key) - 1 };
  switch (key) {
    case "ArrowUp":
    case "+":
    case "=":
      return { kind: "quality-up" };
    case "ArrowDown":
    case "-":
      return { kind: "quality-down" };
    case "a":
    case "A":
      return { kind: "auto" };
    case "[":
      return { kind: "audio-bitrate-down" };
    case "]":
      return { kind: "audio-bitrate-up" };
    case "m":
    case "M":
      return { kind: "toggle-mute" };
    case " ":
      return { kind: "toggle-pause" };
    case "s":
    case "S":
      return { kind: "toggle-stats" };
    case "h":
    case "H":
    case "F1":
      return { kind: "toggle-help" };
  }
  if (code === "NumpadAdd") return { kind: "quality-up" };
  if (code === "NumpadSubtract") return { kind: "quality-down" };
  return undefined;
}
