/**
 * LocalLife's notifications in a WeChat mini-program, over protocol 2 of `/v1/ws`
 * (SPEC §2.3, §7). One socket per client at most; reconnects with capped exponential
 * backoff and full jitter; the token refreshed in-band before it expires; each
 * notification handed to `onNotification` once per `message_id` (remembered in storage
 * across app restarts) and acked after the handler resolved.
 *
 * How to use it, with a merchant and a rider page that run against `locallife demo`:
 * `sdk/miniprogram/README.md`. This reference is generated from the SDK's types and
 * comments (`npm run docs` in `sdk/miniprogram`); `npm test` fails when it is stale.
 *
 * @packageDocumentation
 */

import type {
  Client,
  ClientEvent,
  ClientOptions,
  ClientState,
  Notification,
  OutgoingMessages,
  OutgoingType,
  SocketTaskLike,
  Storage,
  SubscribeOptions,
  SubscribeResult,
  Subscription,
  WxLike,
} from './types';

// Types only, so the build is one file with no require(): a mini-program can copy
// dist/index.js alone (as the example's libs/realtime.js).
export type {
  Announcement,
  AlertPaymentTimeout,
  AlertSystemError,
  Client,
  ClientEvent,
  ClientOptions,
  ClientState,
  InventoryLow,
  Notification,
  NotificationEvent,
  OrderDispatched,
  OrderPaid,
  OrderRecommend,
  OrderTaken,
  OrderUrged,
  OutgoingMessages,
  OutgoingType,
  PlatformNotice,
  RiderCommand,
  SocketTaskLike,
  Storage,
  SubscribeOptions,
  SubscribeResult,
  Subscription,
  WxLike,
} from './types';

/** First reconnect delay ceiling; it doubles per failed attempt up to `BACKOFF_MAX_MS`. */
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30_000;
/** How many handled ids storage keeps (the newest), and for how long: longer than the
 * longest notification ttl (a platform notice may live 7 days). */
export const SEEN_MAX = 500;
export const SEEN_KEEP_MS = 8 * 24 * 3600 * 1000;
const SEEN_KEY = 'locallife.realtime.seen';
/** The token is refreshed this long before it expires (a short-lived one at 80% of its life). */
const REFRESH_BEFORE_MS = 60_000;
/** The message types the SDK sends itself, which `Client.send` refuses. */
const SDK_SENDS = ['ack', 'ping', 'pong', 'auth'];

/** The ceiling of the `attempt`-th reconnect delay (attempt 0 is the first). */
export function backoffCeiling(attempt: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, Math.min(attempt, 30)));
}

/** Full jitter: a delay anywhere from 0 to the ceiling. */
export function backoffDelay(attempt: number): number {
  return Math.floor(Math.random() * backoffCeiling(attempt));
}

/** Handled message ids with when they may be forgotten, kept in `storage`. Clients
 * sharing a storage (two pages' clients in one mini-program) share the ids: each write
 * merges what the others wrote, instead of replacing it. */
export class SeenIds {
  private ids: Record<string, number>;

  constructor(private readonly storage: Storage | undefined) {
    this.ids = this.stored();
  }

  private stored(): Record<string, number> {
    try {
      const stored = this.storage ? this.storage.get(SEEN_KEY) : undefined;
      if (stored && typeof stored === 'object') return { ...(stored as Record<string, number>) };
    } catch (_) {
      // Unreadable: as if empty.
    }
    return {};
  }

  has(id: string, now: number = Date.now()): boolean {
    const until = this.ids[id];
    return until !== undefined && until > now;
  }

  add(id: string, now: number = Date.now()): void {
    this.ids = { ...this.stored(), ...this.ids, [id]: now + SEEN_KEEP_MS };
    const live = Object.keys(this.ids)
      .filter((k) => this.ids[k] > now)
      .sort((a, b) => this.ids[b] - this.ids[a])
      .slice(0, SEEN_MAX);
    const kept: Record<string, number> = {};
    for (const k of live) kept[k] = this.ids[k];
    this.ids = kept;
    try {
      if (this.storage) this.storage.set(SEEN_KEY, kept);
    } catch (_) {
      // A full or failing storage only weakens dedup across restarts.
    }
  }
}

function defaultWx(): WxLike {
  const g = (typeof globalThis !== 'undefined' ? globalThis : {}) as { wx?: WxLike };
  if (!g.wx) throw new Error('@locallife/realtime: no `wx` (pass options.wx)');
  return g.wx;
}

function wxStorage(wx: WxLike): Storage | undefined {
  const get = wx.getStorageSync;
  const set = wx.setStorageSync;
  if (!get || !set) return undefined;
  return { get: (k) => get.call(wx, k), set: (k, v) => set.call(wx, k, v) };
}

function withQuery(url: string, token: string): string {
  const sep = url.indexOf('?') >= 0 ? '&' : '?';
  return `${url}${sep}token=${encodeURIComponent(token)}&protocol=2`;
}

function retryAfterMs(reason: string): number {
  try {
    const parsed = JSON.parse(reason) as { retry_after_s?: number };
    if (typeof parsed.retry_after_s === 'number' && parsed.retry_after_s > 0) {
      return parsed.retry_after_s * 1000;
    }
  } catch (_) {
    // Not JSON: no hint.
  }
  return 0;
}

interface Welcome {
  idle_timeout_s?: number;
  ping_interval_s?: number;
  token_expires_at?: string;
}

/** How long a socket given up on may take to report its close before the client
 * reconnects anyway (a half-open socket may never report one). */
const LOSE_WAIT_MS = 3000;

/**
 * A client for one user's socket: nothing happens until `connect()`. It then keeps one
 * socket open to `options.url` (with `?token=…&protocol=2` added), reconnecting after
 * every close but a 4003, hands each notification to `options.onNotification` once and
 * acks it after the handler resolved.
 *
 * ```js
 * const client = createClient({
 *   url: 'wss://api.example.com/v1/ws',
 *   getToken: () => getApp().refreshToken('merchant'),
 *   onNotification: async (n) => { if (n.event === 'order.paid') playSound(); },
 *   onEvent: (e) => { if (e.type === 'stopped') showNotAdmitted(e.reason); },
 * });
 * client.connect();
 * ```
 */
export function createClient(options: ClientOptions): Client {
  const wx = options.wx || defaultWx();
  const seen = new SeenIds(options.storage || wxStorage(wx));
  const handling = new Set<string>();
  let state: ClientState = 'idle';
  /** Whether the client should be connected (connect() called, no close() or stop). */
  let wanted = false;
  let attempt = 0;
  /** Bumped for every socket: events of an older one are ignored. */
  let generation = 0;
  let task: SocketTaskLike | undefined;
  /** Ends the current socket as if the network had dropped it (1006). */
  let lose: ((reason: string) => void) | undefined;
  /** The last heartbeat `ping` has had no answer yet (no message at all since). */
  let pingSentAt: number | undefined;
  let retryTimer: unknown;
  let pingTimer: unknown;
  let refreshTimer: unknown;

  const emit = (e: ClientEvent) => {
    if (!options.onEvent) return;
    try {
      options.onEvent(e);
    } catch (_) {
      // A throwing listener does not break the client.
    }
  };

  const clearTimers = () => {
    if (pingTimer !== undefined) clearInterval(pingTimer);
    if (refreshTimer !== undefined) clearTimeout(refreshTimer);
    pingTimer = undefined;
    refreshTimer = undefined;
    pingSentAt = undefined;
  };

  /** Writes on the open socket. A send WeChat refuses means the socket is gone (a
   * backgrounded app's socket may die without an `onClose`): it is treated as a drop. */
  const write = (message: unknown): boolean => {
    if (!task || state !== 'open') return false;
    const mine = generation;
    let failed = false;
    task.send({
      data: JSON.stringify(message),
      fail: () => {
        failed = true;
        if (mine === generation && lose) lose('send failed');
      },
    });
    return !failed;
  };

  /** The heartbeat. A `ping` not answered by the next tick (no message at all came in
   * an interval) means a dead socket that WeChat has not noticed: a half-open TCP
   * connection after a network change reports no close for minutes. Half an interval,
   * not a whole one: ticks that fire late, back to back (timers resuming after the app
   * was in the background), do not count as an unanswered interval. */
  const heartbeat = (every: number) => {
    if (pingSentAt !== undefined && Date.now() - pingSentAt >= every / 2) {
      if (lose) lose('no answer to ping');
      return;
    }
    if (pingSentAt === undefined) pingSentAt = Date.now();
    write({ type: 'ping', data: {} });
  };

  const dropSocket = () => {
    clearTimers();
    generation += 1;
    const old = task;
    task = undefined;
    lose = undefined;
    if (old) {
      try {
        old.close({ code: 1000, reason: 'client closing' });
      } catch (_) {
        // Already closed.
      }
    }
  };

  const scheduleReconnect = (atLeastMs: number) => {
    if (!wanted) return;
    const delay = Math.max(atLeastMs, backoffDelay(attempt));
    attempt += 1;
    state = 'connecting';
    emit({ type: 'reconnecting', delay_ms: delay });
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      open();
    }, delay);
  };

  /** The app came to the foreground, or the network came back: try now. An open socket
   * is probed with a `ping`: if it died in the background, the send fails (a drop). */
  const nudge = () => {
    if (wanted && state === 'open') {
      write({ type: 'ping', data: {} });
      return;
    }
    if (!wanted || retryTimer === undefined) return;
    clearTimeout(retryTimer);
    retryTimer = undefined;
    open();
  };
  const onNetwork = (r: { isConnected: boolean }) => {
    if (r && r.isConnected) nudge();
  };

  const scheduleRefresh = (expiresAt: string | undefined) => {
    if (refreshTimer !== undefined) clearTimeout(refreshTimer);
    refreshTimer = undefined;
    const exp = expiresAt ? Date.parse(expiresAt) : NaN;
    if (isNaN(exp)) return;
    const left = exp - Date.now();
    // A minute before, or at 80% of what is left when that is sooner than a minute.
    const wait = Math.max(0, left - REFRESH_BEFORE_MS, left * 0.8);
    const mine = generation;
    refreshTimer = setTimeout(() => {
      refreshTimer = undefined;
      options.getToken().then(
        (token) => {
          if (mine === generation) write({ type: 'auth', data: { token } });
        },
        (error) => emit({ type: 'error', error }),
      );
    }, wait);
  };

  const onWelcome = (data: Welcome) => {
    attempt = 0;
    state = 'open';
    const idle = (data.idle_timeout_s || 60) * 1000;
    // Comfortably inside the idle timeout: mini-programs may not answer Ping frames.
    const every = Math.max(1000, Math.min(idle / 3, (data.ping_interval_s || 54) * 1000));
    pingTimer = setInterval(() => heartbeat(every), every);
    scheduleRefresh(data.token_expires_at);
    emit({ type: 'open' });
  };

  const onNotificationMessage = (n: Notification) => {
    const id = n && n.message_id;
    if (typeof id !== 'string') return;
    const ack = () => {
      if (n.requires_ack) write({ type: 'ack', data: { message_id: id } });
    };
    if (seen.has(id)) {
      // Handled before (maybe before an app restart): only the ack was missing.
      ack();
      return;
    }
    if (handling.has(id)) return;
    handling.add(id);
    let result: void | Promise<void>;
    try {
      result = options.onNotification(n);
    } catch (error) {
      handling.delete(id);
      emit({ type: 'error', error });
      return;
    }
    Promise.resolve(result).then(
      () => {
        handling.delete(id);
        if (n.requires_ack) seen.add(id);
        ack();
      },
      (error) => {
        // Not acked: the server sends it again, and the handler gets another go.
        handling.delete(id);
        emit({ type: 'error', error });
      },
    );
  };

  const onMessage = (raw: string | ArrayBuffer) => {
    // Anything from the server answers the heartbeat.
    pingSentAt = undefined;
    if (typeof raw !== 'string') return;
    let message: { type?: string; data?: unknown };
    try {
      message = JSON.parse(raw);
    } catch (error) {
      emit({ type: 'error', error });
      return;
    }
    switch (message.type) {
      case 'welcome':
        onWelcome((message.data || {}) as Welcome);
        break;
      case 'notification':
        onNotificationMessage(message.data as Notification);
        break;
      case 'auth_ok':
        scheduleRefresh(((message.data || {}) as { expires_at?: string }).expires_at);
        break;
      case 'error':
        emit({ type: 'error', error: message.data });
        break;
      default:
        break;
    }
  };

  const onClose = (code: number, reason: string) => {
    clearTimers();
    task = undefined;
    lose = undefined;
    emit({ type: 'close', code, reason });
    if (!wanted) {
      state = 'idle';
      return;
    }
    if (code === 4003) {
      wanted = false;
      state = 'stopped';
      emit({ type: 'stopped', code, reason });
      return;
    }
    // 4001: the next connect asks getToken for a fresh token. 4029: the server says
    // how long to wait. Everything else (1000 "interrupted", 1001, 1006, 1013, ...):
    // back off and come back.
    scheduleReconnect(code === 4029 ? retryAfterMs(reason) : 0);
  };

  function open(): void {
    if (!wanted) return;
    dropSocket();
    state = 'connecting';
    const mine = generation;
    options.getToken().then(
      (token) => {
        if (mine !== generation || !wanted) return;
        let socket: SocketTaskLike;
        let closed = false;
        const closeOnce = (code: number, reason: string) => {
          if (closed || mine !== generation) return;
          closed = true;
          onClose(code, reason);
        };
        try {
          socket = wx.connectSocket({
            url: withQuery(options.url, token),
            fail: (error) => {
              emit({ type: 'error', error });
              closeOnce(1006, '');
            },
          });
        } catch (error) {
          emit({ type: 'error', error });
          scheduleReconnect(0);
          return;
        }
        task = socket;
        // A socket given up on (a failed send, an unanswered ping) is closed first, and
        // the client reconnects once WeChat reports it closed, or after LOSE_WAIT_MS
        // when a half-open socket never does: never two sockets open at once.
        let lostReason: string | undefined;
        lose = (reason) => {
          if (lostReason !== undefined) return;
          lostReason = reason;
          setTimeout(() => closeOnce(1006, reason), LOSE_WAIT_MS);
          try {
            socket.close({ code: 1000, reason: 'client closing' });
          } catch (_) {
            closeOnce(1006, reason);
          }
        };
        socket.onMessage((r) => {
          if (mine === generation) onMessage(r.data);
        });
        socket.onError((error) => {
          if (mine === generation) emit({ type: 'error', error });
        });
        socket.onClose((r) => {
          if (lostReason !== undefined) closeOnce(1006, lostReason);
          else closeOnce(r && r.code ? r.code : 1006, (r && r.reason) || '');
        });
      },
      (error) => {
        if (mine !== generation) return;
        emit({ type: 'error', error });
        scheduleReconnect(0);
      },
    );
  }

  let listening = false;
  const listen = (on: boolean) => {
    if (on === listening) return;
    listening = on;
    if (on) {
      if (wx.onAppShow) wx.onAppShow(nudge);
      if (wx.onNetworkStatusChange) wx.onNetworkStatusChange(onNetwork);
    } else {
      if (wx.offAppShow) wx.offAppShow(nudge);
      if (wx.offNetworkStatusChange) wx.offNetworkStatusChange(onNetwork);
    }
  };

  return {
    connect() {
      if (wanted && state !== 'stopped') return;
      wanted = true;
      attempt = 0;
      listen(true);
      open();
    },
    close() {
      wanted = false;
      listen(false);
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      retryTimer = undefined;
      dropSocket();
      state = 'idle';
    },
    state() {
      return state;
    },
    send<T extends OutgoingType>(type: T, data: OutgoingMessages[T]): boolean {
      if (SDK_SENDS.indexOf(type) >= 0) {
        throw new TypeError(`@locallife/realtime: the SDK sends '${type}' itself`);
      }
      return write({ type, data });
    },
  };
}

/** `wx.requestSubscribeMessage` takes at most this many templates per call. */
export const SUBSCRIBE_MAX_TEMPLATES = 3;

function call<T>(wx: WxLike, options: Parameters<NonNullable<WxLike['request']>>[0]): Promise<T> {
  return new Promise((resolve, reject) => {
    if (!wx.request) {
      reject(new Error('@locallife/realtime: wx.request is missing'));
      return;
    }
    wx.request({
      ...options,
      success: (r) => {
        if (r.statusCode >= 200 && r.statusCode < 300) resolve(r.data as T);
        else reject(Object.assign(new Error(`HTTP ${r.statusCode}`), { statusCode: r.statusCode, data: r.data }));
      },
      fail: reject,
    });
  });
}

/**
 * Asks the user to allow WeChat subscription messages for the templates the server
 * names (SPEC §9), and reports each answer to `POST /v1/me/subscriptions`. Each
 * "accept" lets the server send one message of that template, shown in WeChat's
 * service notifications while the mini-program is closed, when a notification that
 * needs confirmation was not confirmed in time.
 *
 * WeChat only shows the prompt in answer to a tap: call this from a button's tap
 * handler (e.g. a merchant's "notify me of new orders" on the orders page), not on
 * page load. Resolves with each template's answer and what is left.
 */
export async function requestSubscriptions(options: SubscribeOptions): Promise<SubscribeResult[]> {
  const wx = options.wx || defaultWx();
  const base = options.apiBase.replace(/\/+$/, '');
  const auth = async () => ({ Authorization: `Bearer ${await options.getToken()}` });
  const listed = await call<Subscription[]>(wx, {
    url: `${base}/v1/me/subscriptions`,
    method: 'GET',
    header: await auth(),
  });
  const wanted = listed
    .filter((s) => s.events.length > 0)
    .filter((s) => !options.events || s.events.some((e) => options.events!.indexOf(e) >= 0))
    .map((s) => s.template_id)
    .slice(0, SUBSCRIBE_MAX_TEMPLATES);
  if (wanted.length === 0) return [];
  const answers = await new Promise<Record<string, string>>((resolve, reject) => {
    if (!wx.requestSubscribeMessage) {
      reject(new Error('@locallife/realtime: wx.requestSubscribeMessage is missing'));
      return;
    }
    wx.requestSubscribeMessage({ tmplIds: wanted, success: resolve, fail: reject });
  });
  const results: SubscribeResult[] = [];
  for (const template_id of wanted) {
    const answer = answers[template_id] || 'filter';
    const reported = await call<Subscription>(wx, {
      url: `${base}/v1/me/subscriptions`,
      method: 'POST',
      header: { ...(await auth()), 'Content-Type': 'application/json' },
      data: { template_id, accepted: answer === 'accept' ? 1 : 0 },
    });
    results.push({ template_id, answer, remaining: reported.remaining });
  }
  return results;
}
