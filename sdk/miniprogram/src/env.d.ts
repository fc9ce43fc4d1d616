// What the SDK uses of its host (a mini-program's JavaScript runtime, or Node in the
// tests): timers and JSON. Not emitted; the published types do not depend on it.
declare function setTimeout(callback: () => void, ms: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare function setInterval(callback: () => void, ms: number): unknown;
declare function clearInterval(handle: unknown): void;
declare function encodeURIComponent(s: string): string;
