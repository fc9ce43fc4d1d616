// The notifications of SPEC §3, as `onNotification` receives them (a `notification`
// message's `data`), discriminated on `event`.

interface Base {
  /** Globally unique; the same on every delivery of this notification. */
  message_id: string;
  title: string;
  content: string;
  requires_ack: boolean;
}

/** 新订单推荐: an order near you waits for a rider (riders). */
export interface OrderRecommend extends Base {
  event: 'order.recommend';
  order_id: number;
  merchant_id: number;
  merchant_name: string;
  total_fen: number;
  distance_m: number;
  [field: string]: unknown;
}
/** 派单通知: an order was assigned to you (riders). */
export interface OrderDispatched extends Base {
  event: 'order.dispatched';
  order_id: number;
  merchant_id: number;
  merchant_name: string;
  address: string;
  [field: string]: unknown;
}
/** Another rider took an order you were offered, or it was closed (live only). */
export interface OrderTaken extends Base {
  event: 'order.taken';
  order_id: number;
  [field: string]: unknown;
}
/** 调度指令: platform staff's instruction to one rider. */
export interface RiderCommand extends Base {
  event: 'rider.command';
  [field: string]: unknown;
}
/** 新订单通知: an order was paid (the merchant's admins). */
export interface OrderPaid extends Base {
  event: 'order.paid';
  order_id: number;
  out_trade_no: string;
  merchant_id: number;
  total_fen: number;
  [field: string]: unknown;
}
/** 催单: the consumer urges an order (the merchant's admins). */
export interface OrderUrged extends Base {
  event: 'order.urged';
  order_id: number;
  merchant_id: number;
  [field: string]: unknown;
}
/** 库存预警: a product's stock fell to its threshold (the merchant's admins). */
export interface InventoryLow extends Base {
  event: 'inventory.low';
  merchant_id: number;
  product_id: number;
  product_name: string;
  stock: number;
  low_stock_threshold: number;
  [field: string]: unknown;
}
/** 支付超时: an unpaid order was closed (platform staff). */
export interface AlertPaymentTimeout extends Base {
  event: 'alert.payment_timeout';
  order_id: number;
  out_trade_no: string;
  merchant_id: number;
  total_fen: number;
  [field: string]: unknown;
}
/** 系统错误: a replica hit a fault it cannot mask (platform staff). */
export interface AlertSystemError extends Base {
  event: 'alert.system_error';
  [field: string]: unknown;
}
/** A notification platform staff sent to one user. */
export interface PlatformNotice extends Base {
  event: 'platform.notice';
  [field: string]: unknown;
}
/** A broadcast to every connected user of a role (live only). */
export interface Announcement extends Base {
  event: 'announcement';
  [field: string]: unknown;
}

export type Notification =
  | OrderRecommend
  | OrderDispatched
  | OrderTaken
  | RiderCommand
  | OrderPaid
  | OrderUrged
  | InventoryLow
  | AlertPaymentTimeout
  | AlertSystemError
  | PlatformNotice
  | Announcement;

export type NotificationEvent = Notification['event'];

/** What `onEvent` reports. */
export type ClientEvent =
  | { type: 'open' }
  /** The socket closed; `reason` is the server's (a JSON string for 4001/4003/4029/1013). */
  | { type: 'close'; code: number; reason: string }
  /** The next connect comes in `delay_ms`. */
  | { type: 'reconnecting'; delay_ms: number }
  /** No more connects until `connect()` (4003: not, or no longer, admitted). */
  | { type: 'stopped'; code?: number; reason?: string }
  | { type: 'error'; error: unknown };

/** The part of a `wx.connectSocket` task the SDK uses. */
export interface SocketTaskLike {
  send(options: { data: string; success?: () => void; fail?: (e: unknown) => void }): void;
  close(options?: { code?: number; reason?: string }): void;
  onOpen(callback: (result: unknown) => void): void;
  onMessage(callback: (result: { data: string | ArrayBuffer }) => void): void;
  onClose(callback: (result: { code: number; reason: string }) => void): void;
  onError(callback: (error: unknown) => void): void;
}

/** The part of `wx` the SDK uses. */
export interface WxLike {
  connectSocket(options: { url: string; fail?: (e: unknown) => void }): SocketTaskLike;
  onAppShow?(callback: () => void): void;
  offAppShow?(callback: () => void): void;
  onNetworkStatusChange?(callback: (result: { isConnected: boolean }) => void): void;
  offNetworkStatusChange?(callback: (result: { isConnected: boolean }) => void): void;
  getStorageSync?(key: string): unknown;
  setStorageSync?(key: string, value: unknown): void;
  /** For `requestSubscriptions`: HTTPS calls to the API. */
  request?(options: {
    url: string;
    method?: 'GET' | 'POST';
    header?: Record<string, string>;
    data?: unknown;
    success?: (result: { statusCode: number; data: unknown }) => void;
    fail?: (error: unknown) => void;
  }): void;
  /** For `requestSubscriptions`: WeChat's subscription prompt (call it from a tap). */
  requestSubscribeMessage?(options: {
    tmplIds: string[];
    success?: (result: Record<string, string>) => void;
    fail?: (error: unknown) => void;
  }): void;
}

/** What the server says about one subscription template (`GET /v1/me/subscriptions`). */
export interface Subscription {
  template_id: string;
  /** Sends of this template the server may still make to this user. */
  remaining: number;
  /** The events it stands in for when the app is closed (e.g. "order.paid"). */
  events: string[];
}

export interface SubscribeOptions {
  /** The API's origin, e.g. "https://api.example.com" (no trailing `/v1`). */
  apiBase: string;
  /** A current access token. */
  getToken: () => Promise<string>;
  /** Only the templates of these events (default: every template the server names). */
  events?: string[];
  /** Defaults to the global `wx`. */
  wx?: WxLike;
}

/** One template's outcome: the user's answer and what is left afterwards. */
export interface SubscribeResult {
  template_id: string;
  /** `accept`, `reject`, `ban` or `filter`, as `wx.requestSubscribeMessage` answered. */
  answer: string;
  remaining: number;
}

/** Where handled message ids are remembered (wx storage by default). */
export interface Storage {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
}

export interface ClientOptions {
  /** The WebSocket endpoint, e.g. "wss://api.example.com/v1/ws". */
  url: string;
  /** A current access token: called before each connect and before expiry. */
  getToken: () => Promise<string>;
  /** Defaults to the global `wx`. */
  wx?: WxLike;
  /** Called at most once per `message_id`; acked after it resolves (not if it throws). */
  onNotification: (n: Notification) => void | Promise<void>;
  /** Told of connects, closes, reconnect delays, a stop (4003) and errors. */
  onEvent?: (e: ClientEvent) => void;
  /** Where handled ids are remembered across app restarts. Defaults to wx storage. */
  storage?: Storage;
}

/** `idle` before `connect()` and after `close()`; `connecting` while connecting or
 * waiting to reconnect; `open` from `welcome` on; `stopped` after a 4003. */
export type ClientState = 'idle' | 'connecting' | 'open' | 'stopped';

/**
 * What a page may send over the client's socket itself, by `type` (SPEC §2.1). The SDK
 * sends `ack`, `ping`, `pong` and `auth` on its own.
 */
export interface OutgoingMessages {
  /**
   * Riders only: the rider's position, for order matching (as `POST /v1/rider/location`).
   * The server answers nothing when it took it, and an `error` message (reported as an
   * `error` event: `not_rider`, `location_refused`, `invalid_message`) when it did not.
   */
  location: { lat: number; lng: number };
}

export type OutgoingType = keyof OutgoingMessages;

/** What `createClient` answers. */
export interface Client {
  /** Connects (and keeps connecting); again after `close()` or a stop. */
  connect(): void;
  /** Closes the socket and stops reconnecting. */
  close(): void;
  /** Where the client is now. */
  state(): ClientState;
  /**
   * Sends `{"type": type, "data": data}` on the open socket, e.g. a rider's `location`.
   * `true` once handed to the socket; `false` when no socket is open (`state()` is not
   * `"open"`) or the socket refused it: nothing is queued, so send again after the next
   * `open` event. Throws a `TypeError` for the types the SDK sends itself.
   */
  send<T extends OutgoingType>(type: T, data: OutgoingMessages[T]): boolean;
}
