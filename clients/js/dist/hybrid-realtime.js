/*! @hybridrt/client 0.1.0 | MIT */

// src/errors.ts
var HybridError = class extends Error {
  constructor(message, opts = {}) {
    super(message);
    this.name = "HybridError";
    this.status = opts.status ?? null;
    this.code = opts.code ?? null;
    this.transport = opts.transport ?? null;
    this.retryAfterMs = opts.retryAfterMs ?? null;
  }
};
function toHybridError(err, transport = null) {
  if (err instanceof HybridError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HybridError(message || "network error", { transport });
}
function retryAfterMs(header, now) {
  if (!header) return null;
  const secs = Number(header);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1e3;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

// src/ids.ts
var decimal = /^(0|[1-9][0-9]{0,18})$/;
function isId(s) {
  return typeof s === "string" && decimal.test(s);
}
function compareIds(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}
function isAfter(id, cursor) {
  return cursor === null || compareIds(id, cursor) > 0;
}
function before(id) {
  const n = BigInt(id);
  return (n > 0n ? n - 1n : 0n).toString();
}

// src/backoff.ts
var Backoff = class {
  constructor(initialMs, maxMs, random) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
    this.attempt = 0;
  }
  /** next returns the next wait, at least atLeastMs (a server's Retry-After). */
  next(atLeastMs = 0) {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(atLeastMs, Math.floor(this.random() * cap));
  }
  reset() {
    this.attempt = 0;
  }
  /** failures is how many waits were taken since the last reset. */
  get failures() {
    return this.attempt;
  }
};

// src/jwt.ts
function decodeTokenTimes(token) {
  const none = { exp: null, iat: null };
  const part = token.split(".")[1];
  if (!part) return none;
  try {
    let b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    b64 += "=".repeat((4 - b64.length % 4) % 4);
    const claims = JSON.parse(decodeBase64(b64));
    const num = (v) => typeof v === "number" && Number.isFinite(v) ? v : null;
    return { exp: num(claims?.exp), iat: num(claims?.iat) };
  } catch {
    return none;
  }
}
function decodeBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}
var RENEW_AT = 0.8;
function tokenSchedule(times, now) {
  if (times.exp === null) return null;
  const expMs = times.exp * 1e3;
  let start = now;
  let lifetime = expMs - now;
  if (times.iat !== null && times.exp > times.iat) {
    lifetime = (times.exp - times.iat) * 1e3;
    const age = now - times.iat * 1e3;
    if (age >= 0 && age < lifetime) start = times.iat * 1e3;
  }
  if (lifetime <= 0) return { renewAt: now, expiresAt: now };
  return { renewAt: start + RENEW_AT * lifetime, expiresAt: start + lifetime };
}

// src/machine.ts
var HEARTBEAT_SILENCE_FACTOR = 2.5;
var POLL_GRACE_MS = 1e4;
var POLL_MIN_HOLD_MS = 1e3;
var TOKEN_EXPIRY_MARGIN_MS = 5e3;
var MIN_RENEW_DELAY_MS = 1e3;
var RECONNECT_GRACE_MS = 5e3;
var DEFAULT_HEARTBEAT_S = 15;
var WS_SUBPROTOCOL = "hybridrt.v1";
var PUBLISH_TIMEOUT_MS = 1e4;
var OWN_IDS = 1e3;
var CLOSED = 2;
var PRESENCE_OPS = /* @__PURE__ */ new Set(["presence", "member_added", "member_removed"]);
var SYSTEM_TYPES = /* @__PURE__ */ new Set(["ready", "resync", "token_expired", "ping", "*", ...PRESENCE_OPS]);
var ORDER = ["websocket", "sse", "polling"];
function newPollId() {
  const words = new Uint32Array(4);
  const c = globalThis.crypto;
  if (c?.getRandomValues) c.getRandomValues(words);
  else for (let i = 0; i < words.length; i++) words[i] = Math.floor(Math.random() * 4294967296);
  let id = "c_poll";
  for (const w of words) id += w.toString(36);
  return id;
}
var Machine = class {
  constructor(cfg, hooks) {
    this.cfg = cfg;
    this.hooks = hooks;
    this.connected = false;
    this.method = null;
    this.error = null;
    this.running = false;
    this.paused = false;
    this.closed = false;
    this.halted = false;
    // a 400: retrying cannot help until reconnect()
    this.stream = null;
    this.probe = null;
    this.poll = null;
    this.pollWarm = false;
    // the connection id the polls give, for presence and client events
    this.retryTimer = null;
    this.probeTimer = null;
    this.renewTimer = null;
    this.token = null;
    this.tokenPromise = null;
    this.failures = 0;
    // of the current mode's attempts, in a row
    this.visibleHeartbeats = false;
    // the server sends SSE `ping` events we can see
    this.expiredSinceReady = false;
    this.resyncedFrom = void 0;
    this.pendingResync = null;
    this.own = /* @__PURE__ */ new Set();
    // ids of client events this client sent
    this.refs = 0;
    this.cursor = cfg.cursor;
    this.backoff = new Backoff(cfg.backoff.initialMs, cfg.backoff.maxMs, cfg.random);
    this.mode = this.preferred();
    this.pollId = newPollId();
  }
  /** connectionId is the service's id of the live connection, or of the polls while polling. */
  get connectionId() {
    if (this.stream?.ready) return this.stream.connectionId;
    if (this.method === "polling" && this.connected) return this.pollId;
    return null;
  }
  /** start connects, unless paused. */
  start() {
    if (this.running || this.closed) return;
    this.running = true;
    this.connect();
  }
  /** close stops for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    this.teardown();
    this.clear("renewTimer");
    this.connected = false;
    this.method = null;
    this.changed();
  }
  /** pause drops the connection until resume (the browser went offline). */
  pause() {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.teardown();
    this.clear("renewTimer");
    this.connected = false;
    this.method = null;
    this.changed();
  }
  /** resume connects again after pause, on the best transport first, with a fresh backoff. */
  resume() {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.resetPreference();
    if (this.token?.renewAt != null) this.scheduleRenewal(this.token.renewAt);
    this.connect();
  }
  /** reconnect drops the connection and connects again at once, on the best transport first. */
  reconnect() {
    if (this.closed) return;
    this.teardown();
    this.connected = false;
    this.halted = false;
    this.error = null;
    this.resetPreference();
    this.connect();
  }
  /** wake connects now if a retry is waiting (the page became visible). */
  wake() {
    if (this.retryTimer !== null && !this.paused && !this.closed) this.connect();
  }
  // --- choosing a transport -------------------------------------------------
  /** usable lists the transports allowed and available here, best first. */
  usable() {
    const ok = (t) => t === "websocket" && this.cfg.WebSocket !== null || t === "sse" && this.cfg.EventSource !== null || t === "polling";
    return [...new Set(this.cfg.transports)].filter((t) => ORDER.includes(t) && ok(t));
  }
  preferred() {
    return this.usable()[0] ?? null;
  }
  /** after returns the transport to fall back to from t, or null. */
  after(t) {
    const u = this.usable();
    const i = t === null ? -1 : u.indexOf(t);
    return i >= 0 ? u[i + 1] ?? null : null;
  }
  /** better reports whether t comes before the current mode. */
  better(t) {
    const u = this.usable();
    return this.mode !== null && u.indexOf(t) >= 0 && u.indexOf(t) < u.indexOf(this.mode);
  }
  resetPreference() {
    this.failures = 0;
    this.backoff.reset();
    this.mode = this.preferred();
  }
  connect() {
    this.clear("retryTimer");
    if (!this.running || this.paused || this.closed || this.halted) return;
    if (this.mode === null) {
      this.halt(new HybridError(this.cfg.transports.length === 0 ? "no transport: transports is empty" : `no transport: none of ${this.cfg.transports.join(", ")} is available here (no WebSocket or EventSource, and polling not allowed)`));
      return;
    }
    this.method = this.mode;
    if (this.mode === "websocket") {
      if (!this.stream) void this.openSocket(false);
    } else if (this.mode === "sse") {
      if (!this.stream) void this.openStream(false);
    } else {
      this.startPolling();
    }
    if (!this.probe && this.probeTimer === null) this.scheduleProbe();
    this.changed();
  }
  /** fallBack moves to the next transport from the cursor, and tries the better ones again later. */
  fallBack() {
    const next = this.after(this.mode);
    if (next === null) {
      this.scheduleRetry();
      return;
    }
    this.mode = next;
    this.failures = 0;
    this.connected = false;
    this.connect();
  }
  /** failed counts a failed attempt of the current mode and falls back or retries. */
  failed(atLeastMs = 0) {
    this.failures++;
    if (this.failures >= this.cfg.failuresBeforeFallback && this.after(this.mode) !== null) this.fallBack();
    else this.scheduleRetry(atLeastMs);
  }
  /** scheduleRetry connects again after a backoff wait (at least atLeastMs). */
  scheduleRetry(atLeastMs = 0, keepConnected = false) {
    if (this.closed || this.paused || this.halted) return;
    this.clear("retryTimer");
    if (!keepConnected) this.connected = false;
    const delay = this.backoff.next(atLeastMs);
    this.retryTimer = this.cfg.clock.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
    this.changed();
  }
  halt(err) {
    this.halted = true;
    this.teardown();
    this.connected = false;
    this.error = err;
    this.changed();
  }
  /** teardown closes every transport and pending attempt, but keeps the token. */
  teardown() {
    this.closeStream(this.stream);
    this.closeStream(this.probe);
    this.stopPolling();
    this.clear("retryTimer");
    this.clear("probeTimer");
  }
  /** newStream registers a stream (or probe) about to open. */
  newStream(kind, probe) {
    const s = {
      kind,
      es: null,
      ws: null,
      probe,
      ready: false,
      liveAt: 0,
      connectionId: null,
      heartbeatMs: DEFAULT_HEARTBEAT_S * 1e3,
      from: null,
      ticketExpiresAt: null,
      tokenValue: null,
      renewingTo: null,
      openTimer: null,
      watchdog: null,
      pinger: null,
      pending: /* @__PURE__ */ new Map(),
      done: false
    };
    if (probe) this.probe = s;
    else this.stream = s;
    return s;
  }
  /** live marks a stream live: connected, and a probe becomes the stream. */
  live(s) {
    this.cfg.clock.clearTimeout(s.openTimer);
    s.openTimer = null;
    s.ready = true;
    s.liveAt = this.cfg.clock.now();
    if (s.probe) this.promote(s);
    this.expiredSinceReady = false;
    this.backoff.reset();
    this.mode = s.kind;
    this.method = s.kind;
    this.connected = true;
    this.error = null;
    this.armWatchdog(s);
    if (!this.probe && this.probeTimer === null) this.scheduleProbe();
    if (this.pendingResync !== null && this.cursor !== null) {
      const reason = this.pendingResync;
      this.pendingResync = null;
      this.resync(null, this.cursor, reason);
    }
    this.changed();
  }
  /** promote makes a probe that came live the stream, and only then closes the old one. */
  promote(s) {
    this.probe = null;
    s.probe = false;
    this.closeStream(this.stream);
    this.stream = s;
    this.stopPolling();
    this.clear("retryTimer");
    this.clear("probeTimer");
    this.failures = 0;
  }
  armOpenTimer(s, graceMs = 0) {
    this.cfg.clock.clearTimeout(s.openTimer);
    s.openTimer = this.cfg.clock.setTimeout(() => this.onOpenTimeout(s), this.cfg.openTimeoutMs + graceMs);
  }
  armWatchdog(s) {
    this.cfg.clock.clearTimeout(s.watchdog);
    s.watchdog = this.cfg.clock.setTimeout(() => this.onSilence(s), HEARTBEAT_SILENCE_FACTOR * s.heartbeatMs);
    if (s.kind === "websocket") {
      this.cfg.clock.clearTimeout(s.pinger);
      s.pinger = this.cfg.clock.setTimeout(() => this.send(s, { op: "ping" }), s.heartbeatMs);
    }
  }
  onOpenTimeout(s) {
    if (s.done) return;
    this.closeStream(s);
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.failures++;
    this.connected = false;
    this.error = new HybridError(s.kind === "sse" ? `no ready event within ${this.cfg.openTimeoutMs} ms: a proxy may be buffering the stream` : `the WebSocket did not subscribe within ${this.cfg.openTimeoutMs} ms: a proxy may be holding it`, { transport: s.kind });
    if (this.after(this.mode) !== null) this.fallBack();
    else this.scheduleRetry();
  }
  onSilence(s) {
    if (s.done || !s.ready) return;
    if (s.kind === "sse" && !this.visibleHeartbeats) {
      this.failures = 0;
      return;
    }
    this.closeStream(s);
    this.connected = false;
    this.error = new HybridError(`no heartbeat for ${HEARTBEAT_SILENCE_FACTOR * s.heartbeatMs / 1e3} s`, { transport: s.kind });
    this.failures++;
    if (this.failures >= this.cfg.failuresBeforeFallback && this.after(this.mode) !== null) this.fallBack();
    else if (this.failures >= this.cfg.failuresBeforeFallback) this.scheduleRetry();
    else this.connect();
  }
  closeStream(s) {
    if (!s || s.done) return;
    s.done = true;
    this.cfg.clock.clearTimeout(s.openTimer);
    this.cfg.clock.clearTimeout(s.watchdog);
    this.cfg.clock.clearTimeout(s.pinger);
    s.es?.close();
    if (s.ws) {
      s.ws.onopen = s.ws.onmessage = s.ws.onclose = s.ws.onerror = null;
      try {
        s.ws.close(1e3);
      } catch {
      }
    }
    for (const p of s.pending.values()) {
      this.cfg.clock.clearTimeout(p.timer);
      p.reject(new HybridError("the WebSocket closed before the client event was acknowledged; it may or may not have been sent", { transport: "websocket" }));
    }
    s.pending.clear();
    if (this.stream === s) this.stream = null;
    if (this.probe === s) this.probe = null;
  }
  /** scheduleProbe tries the best transport again after retryIntervalMs, while on a fallback. */
  scheduleProbe() {
    this.clear("probeTimer");
    const best = this.preferred();
    if (best === null || best === "polling" || !this.better(best)) return;
    if (this.closed || this.paused || this.halted) return;
    this.probeTimer = this.cfg.clock.setTimeout(() => {
      this.probeTimer = null;
      if (!this.probe && !this.closed && !this.paused) this.openProbe(best);
    }, this.cfg.retryIntervalMs);
  }
  openProbe(t) {
    if (!this.better(t)) return;
    if (t === "websocket") void this.openSocket(true);
    else if (t === "sse") void this.openStream(true);
  }
  /** probeFailed probes the next better transport at once, or waits for the next round. */
  probeFailed(s) {
    this.closeStream(s);
    const next = this.after(s.kind);
    if (next !== null && next !== "polling" && this.better(next) && !this.closed && !this.paused && !this.halted) {
      this.openProbe(next);
      return;
    }
    this.scheduleProbe();
  }
  // --- SSE ---------------------------------------------------------------------
  async openStream(probe) {
    const s = this.newStream("sse", probe);
    let ticket;
    let token;
    try {
      [ticket, token] = await this.authorized(async (t) => {
        const body = await this.request("POST", "/api/realtime/tickets", t.value, "sse");
        if (typeof body?.ticket !== "string") throw new HybridError("the tickets endpoint answered without a ticket", { transport: "sse" });
        return [body.ticket, t];
      }, "sse");
    } catch (err) {
      if (s.done) return;
      this.streamFailed(s, toHybridError(err, "sse"));
      return;
    }
    if (s.done) return;
    s.from = this.cursor;
    s.ticketExpiresAt = token.expiresAt;
    s.tokenValue = token.value;
    const es = new this.cfg.EventSource(this.streamURL(ticket, s.from));
    s.es = es;
    es.addEventListener("ready", (m) => this.onReady(s, m));
    es.addEventListener("resync", (m) => this.onResync(s, m));
    es.addEventListener("token_expired", () => this.onTokenExpired(s));
    es.addEventListener("ping", () => this.onPing(s));
    es.addEventListener("error", () => this.onStreamError(s));
    for (const op of PRESENCE_OPS) es.addEventListener(op, (m) => this.onPresence(s, op, parseJSON(m.data)));
    const types = /* @__PURE__ */ new Set(["message", ...this.cfg.eventTypes]);
    for (const type of types) {
      if (!SYSTEM_TYPES.has(type)) es.addEventListener(type, (m) => this.onMessage(s, m));
    }
    this.armOpenTimer(s);
  }
  streamURL(ticket, from) {
    let u = `${this.cfg.url}/api/realtime/sse?channels=${this.channelParam()}&ticket=${encodeURIComponent(ticket)}`;
    if (from !== null) u += `&lastEventId=${from}`;
    return u;
  }
  channelParam() {
    return this.cfg.channels.map(encodeURIComponent).join(",");
  }
  onReady(s, m) {
    if (s.done) return;
    const d = parseJSON(m.data) ?? {};
    s.connectionId = typeof d.connectionId === "string" ? d.connectionId : null;
    const hb = typeof d.heartbeat === "number" && d.heartbeat > 0 ? d.heartbeat : DEFAULT_HEARTBEAT_S;
    s.heartbeatMs = hb * 1e3;
    if (this.cursor === null && isId(d.cursor)) this.cursor = d.cursor;
    this.live(s);
    if (!this.visibleHeartbeats) this.failures = 0;
    const t = this.usableToken();
    if (t && t.value !== s.tokenValue) void this.renewStream(s, t);
  }
  onMessage(s, m) {
    if (s.done) return;
    this.alive(s);
    const env = parseJSON(m.data);
    if (isEnvelope(env)) this.deliver(env);
  }
  onPing(s) {
    if (s.done) return;
    this.visibleHeartbeats = true;
    this.alive(s);
  }
  /** alive notes a sign of life on a stream. */
  alive(s) {
    if (!s.ready) return;
    this.armWatchdog(s);
    if (s.kind === "sse" && this.visibleHeartbeats) this.failures = 0;
  }
  onResync(s, m) {
    if (s.done) return;
    this.alive(s);
    const d = parseJSON(m.data) ?? {};
    const to = isId(d.cursor) ? d.cursor : isId(m.lastEventId) ? m.lastEventId : null;
    if (to !== null) this.resync(s.from, to, typeof d.reason === "string" ? d.reason : RESYNC_REASON);
  }
  /** onPresence hands on a presence message of the live stream (a probe's come again once it is live). */
  onPresence(s, op, d) {
    if (s.done || s.probe) return;
    this.alive(s);
    const m = toPresence(op, d);
    if (m) this.hooks.onPresence?.(m);
  }
  onTokenExpired(s) {
    if (s.done) return;
    this.dropToken();
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.closeStream(s);
    this.connected = false;
    if (this.expiredSinceReady) {
      this.scheduleRetry();
    } else {
      this.expiredSinceReady = true;
      this.connect();
    }
  }
  onStreamError(s) {
    if (s.done || !s.es) return;
    const closed = s.es.readyState === CLOSED;
    const ticketDead = s.ticketExpiresAt !== null && this.cfg.clock.now() >= s.ticketExpiresAt - TOKEN_EXPIRY_MARGIN_MS;
    if (s.ready) {
      s.ready = false;
      s.connectionId = null;
      this.cfg.clock.clearTimeout(s.watchdog);
      this.connected = false;
      if (closed || ticketDead) {
        this.closeStream(s);
        this.scheduleRetry();
      } else {
        this.armOpenTimer(s, RECONNECT_GRACE_MS);
        this.changed();
      }
      return;
    }
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.error = new HybridError("the SSE connection failed", { transport: "sse" });
    if (closed || ticketDead || this.failures + 1 >= this.cfg.failuresBeforeFallback) {
      this.closeStream(s);
      this.failed();
    } else {
      this.failures++;
      this.armOpenTimer(s, RECONNECT_GRACE_MS);
      this.changed();
    }
  }
  /** streamFailed handles an attempt that failed before its EventSource or WebSocket existed. */
  streamFailed(s, err) {
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.closeStream(s);
    this.error = err;
    if (err.status === 401 || err.status === 403) this.dropToken();
    if (err.code === TOKEN_UNAVAILABLE) this.scheduleRetry(err.retryAfterMs ?? 0);
    else this.failed(err.retryAfterMs ?? 0);
  }
  // --- WebSocket (hybridrt.v1) -----------------------------------------------------
  async openSocket(probe) {
    const s = this.newStream("websocket", probe);
    let token;
    try {
      token = this.usableToken() ?? await this.fetchToken("websocket");
    } catch (err) {
      if (s.done) return;
      this.streamFailed(s, toHybridError(err, "websocket"));
      return;
    }
    if (s.done) return;
    s.tokenValue = token.value;
    let ws;
    try {
      ws = new this.cfg.WebSocket(`${this.cfg.url.replace(/^http/, "ws")}/api/realtime/ws`, [WS_SUBPROTOCOL]);
    } catch (err) {
      this.streamFailed(s, toHybridError(err, "websocket"));
      return;
    }
    s.ws = ws;
    ws.onopen = () => this.send(s, { op: "auth", token: token.value });
    ws.onmessage = (m) => this.onSocketMessage(s, m.data);
    ws.onclose = (c) => this.onSocketClose(s, c.code, c.reason);
    ws.onerror = () => {
    };
    this.armOpenTimer(s);
  }
  /** send sends a message on a WebSocket; a failure shows as its close. */
  send(s, m) {
    if (s.done || !s.ws) return;
    try {
      s.ws.send(JSON.stringify(m));
    } catch {
    }
    if (m.op === "ping" && s.ready) {
      this.cfg.clock.clearTimeout(s.pinger);
      s.pinger = null;
    }
  }
  onSocketMessage(s, data) {
    if (s.done) return;
    const m = parseJSON(data);
    if (!m || typeof m.op !== "string") return;
    this.alive(s);
    switch (m.op) {
      case "ready":
        s.connectionId = typeof m.connectionId === "string" ? m.connectionId : null;
        if (this.cursor === null && isId(m.cursor)) this.cursor = m.cursor;
        s.from = this.cursor;
        this.send(s, { op: "subscribe", ref: "subscribe", channels: this.cfg.channels, ...s.from !== null ? { cursor: s.from } : {} });
        return;
      case "event":
        if (isEnvelope(m.event)) this.deliver(m.event);
        return;
      case "resync":
        if (isId(m.cursor)) this.resync(s.from, m.cursor, RESYNC_REASON);
        return;
      case "subscribed":
        if (m.ref === "subscribe" && !s.ready) this.onSocketLive(s);
        return;
      case "presence":
      case "member_added":
      case "member_removed":
        this.onPresence(s, m.op, m);
        return;
      case "published":
        this.settle(s, m.ref, isId(m.id) ? m.id : null, null);
        return;
      case "token_renewed":
        if (s.renewingTo !== null) s.tokenValue = s.renewingTo;
        s.renewingTo = null;
        return;
      case "token_expired":
        this.onTokenExpired(s);
        return;
      case "ping":
        this.send(s, { op: "pong" });
        return;
      case "error":
        this.onSocketError(s, m);
        return;
    }
  }
  onSocketLive(s) {
    this.live(s);
    const t = this.usableToken();
    if (t && t.value !== s.tokenValue) this.renewSocket(s, t);
  }
  /** onSocketError takes an `error` answer: to the subscribe, a renewal or a client event. */
  onSocketError(s, m) {
    const code = typeof m.code === "string" ? m.code : null;
    const message = typeof m.message === "string" ? m.message : "the service refused the message";
    const err = new HybridError(`WebSocket: ${message}`, { status: statusOf(code), code, transport: "websocket" });
    if (m.ref === "subscribe") {
      if (code === "cursor_ahead") {
        this.closeStream(s);
        this.startOverFromHead();
        return;
      }
      if (code === "rate_limited" || code === "presence_full") {
        this.closeStream(s);
        this.error = err;
        if (s.probe) this.probeFailed(s);
        else this.scheduleRetry();
        return;
      }
      this.halt(err);
      return;
    }
    if (m.ref === "token") {
      s.renewingTo = null;
      this.error = err;
      this.changed();
      this.scheduleRenewal(this.cfg.clock.now() + this.cfg.backoff.initialMs * 4);
      return;
    }
    if (typeof m.ref === "string") this.settle(s, m.ref, null, err);
  }
  onSocketClose(s, code, reason) {
    if (s.done) return;
    const wasLive = s.ready;
    const lived = wasLive ? this.cfg.clock.now() - s.liveAt : 0;
    if (code === 4001) {
      this.onTokenExpired(s);
      return;
    }
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.closeStream(s);
    this.connected = false;
    const why = reason ? `${code} ${reason}` : String(code);
    switch (code) {
      case 4003:
      case 4029:
      case 1011:
      case 1012:
        this.error = new HybridError(`the WebSocket was closed: ${why}`, { status: code === 4003 ? 403 : code === 4029 ? 429 : 503, transport: "websocket" });
        this.scheduleRetry(code === 4003 ? this.cfg.backoff.maxMs : 0);
        return;
    }
    this.error = new HybridError(wasLive ? `the WebSocket broke: ${why}` : `the WebSocket failed to open: ${why}`, { transport: "websocket" });
    if (wasLive && lived >= this.cfg.openTimeoutMs) {
      this.failures = 0;
      this.scheduleRetry();
      return;
    }
    this.failed();
  }
  /** renewSocket hands a live WebSocket a fresh token, in place. */
  renewSocket(s, token) {
    if (s.done || !s.ready || s.tokenValue === token.value || s.renewingTo === token.value) return;
    s.renewingTo = token.value;
    this.send(s, { op: "token", ref: "token", token: token.value });
  }
  /** settle answers a client event sent over a WebSocket. */
  settle(s, ref, id, err) {
    if (typeof ref !== "string") return;
    const p = s.pending.get(ref);
    if (!p) return;
    s.pending.delete(ref);
    this.cfg.clock.clearTimeout(p.timer);
    if (id !== null) {
      this.noteOwn(id);
      p.resolve(id);
    } else {
      p.reject(err ?? new HybridError("the service answered a client event without an id", { transport: "websocket" }));
    }
  }
  // --- long-polling ------------------------------------------------------------
  startPolling() {
    if (!this.poll) {
      if (!this.connected) this.pollWarm = false;
      void this.pollOnce();
    }
  }
  async pollOnce() {
    const p = { controller: new AbortController(), guard: null, done: false };
    this.poll = p;
    const from = this.cursor;
    const started = this.cfg.clock.now();
    const hold = this.pollWarm ? this.cfg.pollTimeoutS : 0;
    let body;
    try {
      body = await this.authorized(async (t) => {
        if (p.done) throw new HybridError("aborted");
        this.cfg.clock.clearTimeout(p.guard);
        p.guard = this.cfg.clock.setTimeout(() => p.controller.abort(), hold * 1e3 + POLL_GRACE_MS);
        return this.request("GET", this.pollPath(from, hold), t.value, "polling", p.controller.signal);
      }, "polling");
    } catch (err) {
      if (p.done) return;
      this.endPoll(p);
      this.pollFailed(toHybridError(err, "polling"));
      return;
    }
    if (p.done) return;
    this.endPoll(p);
    const events = Array.isArray(body?.events) ? body.events : [];
    const cursor = isId(body?.cursor) ? body.cursor : null;
    if (body?.presence && typeof body.presence === "object" && this.hooks.onPresence) {
      for (const [channel, members] of Object.entries(body.presence)) {
        const m = toPresence("presence", { channel, members });
        if (m) this.hooks.onPresence(m);
      }
    }
    if (body?.resync === true || this.pendingResync !== null) {
      const first = events.find(isEnvelope);
      const to = first ? before(first.id) : cursor;
      if (to !== null) this.resync(from, to, this.pendingResync ?? RESYNC_REASON);
      this.pendingResync = null;
    }
    const interrupted = () => this.closed || this.paused || this.poll !== null || this.mode !== "polling";
    for (const e of events) {
      if (interrupted()) return;
      if (isEnvelope(e)) this.deliver(e);
    }
    if (interrupted()) return;
    if (cursor !== null && isAfter(cursor, this.cursor)) this.cursor = cursor;
    this.backoff.reset();
    this.pollWarm = true;
    this.connected = true;
    this.method = "polling";
    this.error = null;
    this.changed();
    if (hold > 0 && events.length === 0 && this.cfg.clock.now() - started < POLL_MIN_HOLD_MS) {
      this.scheduleRetry(POLL_MIN_HOLD_MS, true);
    } else {
      void this.pollOnce();
    }
  }
  pollPath(from, hold) {
    let path = `/api/realtime/polling?channels=${this.channelParam()}&timeout=${hold}&connectionId=${this.pollId}`;
    if (from !== null) path += `&cursor=${from}`;
    return path;
  }
  pollFailed(err) {
    this.error = err;
    this.connected = false;
    if (err.status === 400 && err.code === "cursor_ahead") {
      this.startOverFromHead();
      return;
    }
    if (err.status === 400) {
      this.halt(err);
      return;
    }
    if (err.status === 401 || err.status === 403) this.dropToken();
    this.scheduleRetry(err.retryAfterMs ?? 0);
  }
  /**
   * startOverFromHead handles a cursor past the tenant's head (its events
   * were reset): start again from the head, and tell the app to reload its
   * state with the next answer.
   */
  startOverFromHead() {
    this.pendingResync = "the cursor is past the latest event; reload your state";
    this.resyncedFrom = void 0;
    this.cursor = null;
    this.scheduleRetry();
  }
  endPoll(p) {
    this.cfg.clock.clearTimeout(p.guard);
    if (this.poll === p) this.poll = null;
  }
  stopPolling() {
    const p = this.poll;
    if (!p) return;
    p.done = true;
    this.cfg.clock.clearTimeout(p.guard);
    p.controller.abort();
    this.poll = null;
  }
  // --- delivery ------------------------------------------------------------------
  /** deliver hands on an event that comes after the cursor, and moves the cursor. */
  deliver(e) {
    if (!isAfter(e.id, this.cursor)) return;
    this.cursor = e.id;
    if (this.own.delete(e.id)) return;
    this.hooks.onEvent(e);
  }
  /** noteOwn remembers the id of a client event this client sent. */
  noteOwn(id) {
    if (!isAfter(id, this.cursor)) return;
    this.own.add(id);
    if (this.own.size > OWN_IDS) this.own.delete(this.own.values().next().value);
  }
  // --- client events -------------------------------------------------------------
  /**
   * publish sends a client event: over the live WebSocket when there is
   * one, else with POST /api/realtime/publish naming connectionId (this
   * machine's connection when it has one), so that the sender's connection
   * leaves the event out.
   */
  async publish(channel, type, data, connectionId = this.connectionId) {
    if (this.closed) throw new HybridError("the client is closed");
    const s = this.stream;
    if (s && s.kind === "websocket" && s.ready && s.ws) {
      const ref = `p${++this.refs}`;
      return new Promise((resolve, reject) => {
        const timer = this.cfg.clock.setTimeout(() => {
          s.pending.delete(ref);
          reject(new HybridError(`no answer to the client event within ${PUBLISH_TIMEOUT_MS} ms`, { transport: "websocket" }));
        }, PUBLISH_TIMEOUT_MS);
        s.pending.set(ref, { resolve, reject, timer });
        this.send(s, { op: "publish", ref, channel, type, ...data !== void 0 ? { data } : {} });
      });
    }
    const transport = this.method;
    const body = { channel, type };
    if (data !== void 0) body.data = data;
    if (connectionId !== null) body.connectionId = connectionId;
    const answer = await this.authorized((t) => this.request("POST", "/api/realtime/publish", t.value, transport, void 0, JSON.stringify(body)), transport);
    const id = Array.isArray(answer?.ids) ? answer.ids[0] : null;
    if (!isId(id)) throw new HybridError("POST /api/realtime/publish answered without an id", { transport });
    this.noteOwn(id);
    return id;
  }
  /**
   * resync tells the app that events between `from` and `to` were lost to
   * retention. Both transports may say so for the same gap; it is said once.
   */
  resync(from, to, reason) {
    if (this.resyncedFrom !== void 0 && this.resyncedFrom === from) return;
    if (this.cursor !== null && !isAfter(to, this.cursor) && from !== null) return;
    this.resyncedFrom = from;
    this.cursor = to;
    this.hooks.onEvent({
      id: to,
      channel: "",
      type: "resync",
      data: { cursor: to, reason },
      time: new Date(this.cfg.clock.now()).toISOString()
    });
  }
  // --- tokens --------------------------------------------------------------------
  /**
   * authorized runs fn with a token. On a 401 with a token that was cached,
   * it gets a fresh one and runs fn once more.
   */
  async authorized(fn, transport) {
    const cached = this.usableToken();
    const t = cached ?? await this.fetchToken(transport);
    try {
      return await fn(t);
    } catch (err) {
      if (!(err instanceof HybridError && err.status === 401) || !cached) throw err;
      this.dropToken(t);
      return fn(await this.fetchToken(transport));
    }
  }
  usableToken() {
    const t = this.token;
    if (!t) return null;
    if (t.expiresAt !== null && this.cfg.clock.now() >= t.expiresAt - TOKEN_EXPIRY_MARGIN_MS) return null;
    return t;
  }
  dropToken(t = this.token) {
    if (t && this.token === t) this.token = null;
  }
  /** fetchToken calls getToken (once for concurrent callers) and schedules the renewal. */
  fetchToken(transport = null) {
    if (this.tokenPromise) return this.tokenPromise;
    const p = (async () => {
      let value;
      try {
        value = await this.cfg.getToken();
      } catch (err) {
        const e = toHybridError(err, transport);
        throw new HybridError(`getToken failed: ${e.message}`, { transport, code: TOKEN_UNAVAILABLE });
      }
      if (typeof value !== "string" || value === "") {
        throw new HybridError("getToken must resolve to a JWT string", { transport, code: TOKEN_UNAVAILABLE });
      }
      const now = this.cfg.clock.now();
      const when = tokenSchedule(decodeTokenTimes(value), now);
      const token = { value, expiresAt: when?.expiresAt ?? null, renewAt: when?.renewAt ?? null };
      if (when && this.token?.value === value) {
        token.renewAt = Math.max(when.renewAt, now + (when.expiresAt - now) / 2);
      }
      if (!this.closed) {
        this.token = token;
        if (token.renewAt !== null) this.scheduleRenewal(token.renewAt);
      }
      return token;
    })();
    this.tokenPromise = p;
    const clear = () => {
      if (this.tokenPromise === p) this.tokenPromise = null;
    };
    p.then(clear, clear);
    return p;
  }
  scheduleRenewal(at) {
    this.clear("renewTimer");
    if (this.closed || this.paused) return;
    const delay = Math.max(MIN_RENEW_DELAY_MS, at - this.cfg.clock.now());
    this.renewTimer = this.cfg.clock.setTimeout(() => {
      this.renewTimer = null;
      void this.renew();
    }, delay);
  }
  /** renew gets a fresh token before the current one expires and hands it to the live stream. */
  async renew() {
    if (this.closed || this.paused) return;
    let token;
    try {
      token = await this.fetchToken();
    } catch (err) {
      if (this.closed) return;
      this.error = toHybridError(err);
      this.changed();
      this.scheduleRenewal(this.cfg.clock.now() + this.backoff.next());
      return;
    }
    const s = this.stream;
    if (s && s.ready && s.kind === "websocket") this.renewSocket(s, token);
    else if (s && s.ready) await this.renewStream(s, token);
  }
  /** renewStream re-authorizes a live stream in place with token. */
  async renewStream(s, token) {
    if (s.done || !s.ready || s.connectionId === null || s.tokenValue === token.value) return;
    try {
      await this.request("POST", `/api/realtime/connections/${encodeURIComponent(s.connectionId)}/token`, token.value, "sse");
      s.tokenValue = token.value;
    } catch (err) {
      if (s.done || this.closed) return;
      const e = toHybridError(err, "sse");
      if (e.status === 404) return;
      this.error = e;
      this.changed();
      this.scheduleRenewal(this.cfg.clock.now() + Math.max(e.retryAfterMs ?? 0, this.cfg.backoff.initialMs * 4));
    }
  }
  // --- HTTP ----------------------------------------------------------------------
  async request(method, path, token, transport, signal, body) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== void 0) headers["Content-Type"] = "application/json";
    const res = await this.cfg.fetch(this.cfg.url + path, { method, headers, signal, body });
    if (res.ok) {
      const text = await res.text();
      return text ? JSON.parse(text) : null;
    }
    let problem = null;
    try {
      problem = JSON.parse(await res.text());
    } catch {
    }
    const detail = typeof problem?.detail === "string" && problem.detail ? problem.detail : typeof problem?.title === "string" ? problem.title : `HTTP ${res.status}`;
    throw new HybridError(`${method} ${path.split("?")[0]}: ${res.status} ${detail}`, {
      status: res.status,
      code: typeof problem?.code === "string" ? problem.code : null,
      transport,
      retryAfterMs: retryAfterMs(res.headers.get("Retry-After"), this.cfg.clock.now())
    });
  }
  // --- small things ----------------------------------------------------------------
  clear(name) {
    if (this[name] !== null) this.cfg.clock.clearTimeout(this[name]);
    this[name] = null;
  }
  changed() {
    this.hooks.onChange();
  }
};
var TOKEN_UNAVAILABLE = "token_unavailable";
var RESYNC_REASON = "events before the cursor were lost to retention; reload your state";
function parseJSON(s) {
  if (typeof s !== "string") return null;
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}
function toPresence(op, d) {
  if (!d || typeof d.channel !== "string" || d.channel === "") return null;
  const member = (v) => {
    if (!v || typeof v.id !== "string") return null;
    return v.info === void 0 ? { id: v.id } : { id: v.id, info: v.info };
  };
  if (op === "presence") {
    if (!Array.isArray(d.members)) return null;
    return { kind: "presence", channel: d.channel, members: d.members.map(member).filter((m) => m !== null) };
  }
  if (op === "member_added" || op === "member_removed") {
    const m = member(d.member);
    return m ? { kind: op, channel: d.channel, member: m } : null;
  }
  return null;
}
function statusOf(code) {
  switch (code) {
    case "client_events_disabled":
    case "insufficient_scope":
    case "tenant_suspended":
      return 403;
    case "client_event_rate_limited":
    case "rate_limited":
    case "quota_exceeded":
      return 429;
    case "presence_full":
      return 403;
    default:
      return 400;
  }
}
function isEnvelope(v) {
  const e = v;
  return typeof e === "object" && e !== null && isId(e.id) && typeof e.type === "string" && typeof e.channel === "string";
}

// src/presence.ts
var Room = class {
  constructor(channel, safely2) {
    this.channel = channel;
    this.safely = safely2;
    this.known = null;
    this.sorted = null;
    this.joins = /* @__PURE__ */ new Set();
    this.leaves = /* @__PURE__ */ new Set();
    this.changes = /* @__PURE__ */ new Set();
  }
  get members() {
    if (this.known === null) return null;
    this.sorted ?? (this.sorted = [...this.known.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return this.sorted;
  }
  onJoin(fn) {
    return add(this.joins, fn);
  }
  onLeave(fn) {
    return add(this.leaves, fn);
  }
  subscribe(fn) {
    return add(this.changes, fn);
  }
  /** apply takes in a presence message of this channel. */
  apply(m) {
    const joined = [];
    const left = [];
    if (m.kind === "presence") {
      const next = new Map(m.members.map((x) => [x.id, x]));
      if (this.known !== null) {
        for (const [id, x] of next) if (!this.known.has(id)) joined.push(x);
        for (const [id, x] of this.known) if (!next.has(id)) left.push(x);
      }
      const first = this.known === null;
      if (!first && joined.length === 0 && left.length === 0 && sameInfo(this.known, next)) return;
      this.known = next;
    } else {
      if (this.known === null) return;
      if (m.kind === "member_added") {
        if (!this.known.has(m.member.id)) joined.push(m.member);
        this.known.set(m.member.id, m.member);
      } else {
        const gone = this.known.get(m.member.id);
        if (!gone) return;
        this.known.delete(m.member.id);
        left.push(gone);
      }
    }
    this.sorted = null;
    for (const x of joined) for (const fn of [...this.joins]) this.safely(() => fn(x));
    for (const x of left) for (const fn of [...this.leaves]) this.safely(() => fn(x));
    const members = this.members;
    for (const fn of [...this.changes]) this.safely(() => fn(members));
  }
  /** snapshot is the members as a presence message, for a tab that joins; null until known. */
  snapshot() {
    const members = this.members;
    return members === null ? null : { kind: "presence", channel: this.channel, members };
  }
};
function add(set, fn) {
  set.add(fn);
  return () => {
    set.delete(fn);
  };
}
function sameInfo(a, b) {
  for (const [id, x] of b) if (JSON.stringify(a.get(id)?.info) !== JSON.stringify(x.info)) return false;
  return true;
}

// src/tabs.ts
var RING_SIZE = 1e3;
function lockName(url, channels) {
  return `hybridrt:${url}|${[...channels].sort().join(",")}`;
}
var TabGroup = class {
  constructor(deps, hooks) {
    this.deps = deps;
    this.hooks = hooks;
    this.role = "follower";
    this.bc = null;
    this.abort = new AbortController();
    this.release = null;
    this.welcomed = false;
    this.held = [];
    // relayed before our welcome
    this.ring = [];
    // the ring holds every event of ours after floor
    this.lastState = null;
    this.closed = false;
    this.floor = hooks.cursor();
  }
  start() {
    const bc = new this.deps.BroadcastChannel(this.deps.name);
    bc.onmessage = (ev) => this.receive(ev.data);
    this.bc = bc;
    this.post({ kind: "hello", from: this.deps.id, cursor: this.hooks.cursor() });
    this.deps.locks.request(this.deps.name, { signal: this.abort.signal }, () => {
      if (this.closed) return;
      return new Promise((resolve) => {
        this.release = resolve;
        this.lead();
      });
    }).catch(() => {
    });
  }
  /** close leaves the group; a leader hands the lock to the next tab. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.release?.();
    this.release = null;
    this.bc?.close();
    this.bc = null;
  }
  /** relay sends an event of the leader's transport to the followers. */
  relay(event) {
    this.record(event);
    this.post({ kind: "event", event });
  }
  /** relayPresence sends a presence message of the leader's transport to the followers. */
  relayPresence(message) {
    this.post({ kind: "presence", message });
  }
  /** relayState sends the leader's state to the followers. */
  relayState(state) {
    this.lastState = state;
    this.noteCursor(state.cursor);
    this.post({ kind: "state", state });
  }
  /** requestReconnect asks the leader to reconnect. */
  requestReconnect() {
    this.post({ kind: "reconnect" });
  }
  /** noteCursor tells the group a position from which this tab has seen every event. */
  noteCursor(cursor) {
    if (this.floor === null && cursor !== null) this.floor = cursor;
  }
  lead() {
    if (this.closed) return;
    this.role = "leader";
    if (!this.welcomed) {
      this.welcomed = true;
      const held = this.held;
      this.held = [];
      for (const m of held) this.apply(m);
    }
    this.noteCursor(this.hooks.cursor());
    this.post({ kind: "leader", from: this.deps.id });
    this.hooks.lead();
  }
  receive(m) {
    if (this.closed || !m || typeof m !== "object") return;
    switch (m.kind) {
      case "hello":
        if (this.role === "leader") {
          this.post({ kind: "welcome", to: m.from, ...this.replay(m.cursor), state: this.lastState, presence: this.hooks.presenceSnapshot() });
        }
        return;
      case "reconnect":
        if (this.role === "leader") this.hooks.reconnect();
        return;
      case "leader":
        if (this.role === "follower" && !this.welcomed) this.post({ kind: "hello", from: this.deps.id, cursor: this.hooks.cursor() });
        return;
      case "welcome":
        if (this.role === "follower" && !this.welcomed && m.to === this.deps.id) this.welcome(m);
        return;
      case "event":
      case "state":
      case "presence":
        if (this.role === "leader") return;
        if (!this.welcomed) this.held.push(m);
        else this.apply(m);
        return;
    }
  }
  welcome(w) {
    this.welcomed = true;
    if (!w.complete && w.floor !== null) {
      this.apply({
        kind: "event",
        event: {
          id: w.floor,
          channel: "",
          type: "resync",
          data: { cursor: w.floor, reason: "this tab missed events that the shared connection no longer holds; reload your state" },
          time: new Date(this.hooks.now()).toISOString()
        }
      });
    }
    for (const event of w.events) this.apply({ kind: "event", event });
    const held = this.held;
    this.held = [];
    for (const m of held) this.apply(m);
    if (w.state) this.apply({ kind: "state", state: w.state });
    for (const message of w.presence ?? []) this.apply({ kind: "presence", message });
    this.noteCursor(this.hooks.cursor());
  }
  apply(m) {
    if (m.kind === "event") {
      if (this.hooks.deliver(m.event)) this.record(m.event);
    } else if (m.kind === "state") {
      this.lastState = m.state;
      this.hooks.leaderState(m.state);
    } else if (m.kind === "presence") {
      this.hooks.presence(m.message);
    }
  }
  /** replay answers a hello: the events after cursor, if the ring reaches back to it. */
  replay(cursor) {
    if (cursor === null || this.floor === null) return { events: [], complete: true, floor: this.floor };
    if (compareIds(cursor, this.floor) >= 0) {
      return { events: this.ring.filter((e) => isAfter(e.id, cursor)), complete: true, floor: this.floor };
    }
    return { events: this.ring.slice(), complete: false, floor: this.floor };
  }
  record(event) {
    this.ring.push(event);
    if (this.ring.length > RING_SIZE) {
      const gone = this.ring.shift();
      if (this.floor === null || isAfter(gone.id, this.floor)) this.floor = gone.id;
    }
  }
  post(m) {
    try {
      this.bc?.postMessage(m);
    } catch {
    }
  }
};

// src/client.ts
var DEFAULTS = {
  transports: ["websocket", "sse", "polling"],
  openTimeoutMs: 1e4,
  failuresBeforeFallback: 3,
  retryIntervalMs: 6e4,
  pollTimeoutS: 25,
  backoff: { initialMs: 500, maxMs: 3e4 },
  shareAcrossTabs: true
};
var realClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h)
};
function createHybridRealtime(options) {
  const o = checkOptions(options);
  const g = globalThis;
  const clock = o.clock ?? realClock;
  const random = o.random ?? Math.random;
  const fetchImpl = o.fetch ?? (typeof g.fetch === "function" ? g.fetch.bind(g) : void 0);
  if (!fetchImpl) throw new TypeError("hybridrt: no fetch in this environment; pass options.fetch");
  const EventSourceImpl = o.EventSource !== void 0 ? o.EventSource : g.EventSource ?? null;
  const WebSocketImpl = o.WebSocket !== void 0 ? o.WebSocket : g.WebSocket ?? null;
  const winOpt = o.window !== void 0 ? o.window : g.window ?? null;
  const win = typeof winOpt?.addEventListener === "function" ? winOpt : null;
  const locks = o.locks !== void 0 ? o.locks : g.navigator?.locks ?? null;
  const BC = o.BroadcastChannel !== void 0 ? o.BroadcastChannel : g.BroadcastChannel ?? null;
  const handlers = { ...o.eventHandlers };
  const config = {
    url: o.url.replace(/\/+$/, ""),
    channels: [...o.channels],
    getToken: o.getToken,
    transports: o.transports ? [...o.transports] : DEFAULTS.transports,
    cursor: o.cursor ?? null,
    eventTypes: [.../* @__PURE__ */ new Set([...Object.keys(handlers), ...o.eventTypes ?? []])].filter((t) => t !== "*"),
    openTimeoutMs: o.openTimeoutMs ?? o.sseOpenTimeoutMs ?? DEFAULTS.openTimeoutMs,
    failuresBeforeFallback: o.failuresBeforeFallback ?? o.sseFailuresBeforePolling ?? DEFAULTS.failuresBeforeFallback,
    retryIntervalMs: o.retryIntervalMs ?? o.sseRetryIntervalMs ?? DEFAULTS.retryIntervalMs,
    pollTimeoutS: o.pollTimeoutS ?? DEFAULTS.pollTimeoutS,
    backoff: {
      initialMs: o.backoff?.initialMs ?? DEFAULTS.backoff.initialMs,
      maxMs: o.backoff?.maxMs ?? DEFAULTS.backoff.maxMs
    },
    clock,
    fetch: fetchImpl,
    EventSource: EventSourceImpl,
    WebSocket: WebSocketImpl,
    random
  };
  let state = {
    isConnected: false,
    activeMethod: null,
    lastEvent: null,
    error: null,
    cursor: config.cursor,
    role: "solo",
    connectionId: null
  };
  const listeners = /* @__PURE__ */ new Set();
  let machine = null;
  let sender = null;
  const rooms = /* @__PURE__ */ new Map();
  let group = null;
  let offline = win?.navigator?.onLine === false;
  let closed = false;
  function notify() {
    const s = state;
    for (const l of [...listeners]) safely(() => l(s));
    if (o.onStateChange) safely(() => o.onStateChange(s));
  }
  function set(patch) {
    state = { ...state, ...patch };
    notify();
  }
  function accept(e) {
    if (closed) return false;
    if (e.type !== "resync" && !isAfter(e.id, state.cursor)) return false;
    state = { ...state, lastEvent: e, cursor: e.id };
    const h = handlers[e.type];
    if (h) safely(() => h(e));
    const all = handlers["*"];
    if (all) safely(() => all(e));
    notify();
    return true;
  }
  function room(channel) {
    let r = rooms.get(channel);
    if (!r) {
      r = new Room(channel, safely);
      rooms.set(channel, r);
    }
    return r;
  }
  function presence(m) {
    if (!closed && config.channels.includes(m.channel)) room(m.channel).apply(m);
  }
  function startMachine() {
    sender?.close();
    sender = null;
    const m = new Machine({ ...config, cursor: state.cursor }, {
      onEvent(e) {
        if (accept(e)) group?.relay(e);
      },
      onPresence(p) {
        presence(p);
        group?.relayPresence(p);
      },
      onChange() {
        if (machine !== m || closed) return;
        set({ isConnected: m.connected, activeMethod: m.method, error: m.error, cursor: m.cursor, connectionId: m.connectionId });
        group?.relayState({
          isConnected: m.connected,
          activeMethod: m.method,
          cursor: m.cursor,
          connectionId: m.connectionId,
          error: m.error && { message: m.error.message, status: m.error.status, code: m.error.code }
        });
      }
    });
    machine = m;
    if (offline) m.pause();
    m.start();
  }
  const share = o.shareAcrossTabs ?? DEFAULTS.shareAcrossTabs;
  if (share && locks && BC) {
    state = { ...state, role: "follower" };
    group = new TabGroup(
      { locks, BroadcastChannel: BC, name: lockName(config.url, config.channels), id: tabId(random) },
      {
        lead() {
          if (closed) return;
          state = { ...state, role: "leader" };
          startMachine();
        },
        deliver: accept,
        presence,
        presenceSnapshot: () => [...rooms.values()].map((r) => r.snapshot()).filter((p) => p !== null),
        leaderState(s) {
          const patch = {
            isConnected: s.isConnected,
            activeMethod: s.activeMethod,
            connectionId: s.connectionId ?? null,
            error: s.error && new HybridError(s.error.message, { status: s.error.status, code: s.error.code })
          };
          if (isId(s.cursor) && isAfter(s.cursor, state.cursor)) patch.cursor = s.cursor;
          set(patch);
        },
        reconnect() {
          machine?.reconnect();
        },
        cursor: () => state.cursor,
        now: () => clock.now()
      }
    );
    group.start();
  } else {
    startMachine();
  }
  const onOnline = () => {
    offline = false;
    machine?.resume();
  };
  const onOffline = () => {
    offline = true;
    machine?.pause();
  };
  const onVisibility = () => {
    if (win?.document?.visibilityState === "visible") machine?.wake();
  };
  if (win) {
    win.addEventListener("online", onOnline);
    win.addEventListener("offline", onOffline);
    win.document?.addEventListener("visibilitychange", onVisibility);
  }
  return {
    get isConnected() {
      return state.isConnected;
    },
    get activeMethod() {
      return state.activeMethod;
    },
    get lastEvent() {
      return state.lastEvent;
    },
    get error() {
      return state.error;
    },
    get cursor() {
      return state.cursor;
    },
    get connectionId() {
      return state.connectionId;
    },
    get state() {
      return state;
    },
    reconnect() {
      if (closed) return;
      if (machine) machine.reconnect();
      else group?.requestReconnect();
    },
    close() {
      if (closed) return;
      closed = true;
      if (win) {
        win.removeEventListener("online", onOnline);
        win.removeEventListener("offline", onOffline);
        win.document?.removeEventListener("visibilitychange", onVisibility);
      }
      machine?.close();
      sender?.close();
      group?.close();
      machine = null;
      sender = null;
      state = { ...state, isConnected: false, activeMethod: null };
      notify();
      listeners.clear();
    },
    async publish(channel, type, data) {
      if (closed) throw new HybridError("hybridrt: the client is closed");
      if (typeof channel !== "string" || channel === "") throw new TypeError("hybridrt: publish needs a channel");
      if (typeof type !== "string" || !type.startsWith("client-")) {
        throw new TypeError(`hybridrt: a client event's type starts with "client-" (got ${JSON.stringify(type)})`);
      }
      if (machine) return machine.publish(channel, type, data);
      sender ?? (sender = new Machine({ ...config }, { onEvent() {
      }, onChange() {
      } }));
      return sender.publish(channel, type, data, state.connectionId);
    },
    presence(channel) {
      if (!config.channels.includes(channel) || !channel.startsWith("presence-")) {
        throw new TypeError(`hybridrt: presence(${JSON.stringify(channel)}): not a presence- channel of this client (${config.channels.join(", ")})`);
      }
      return room(channel);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    }
  };
}
function checkOptions(o) {
  if (!o || typeof o !== "object") throw new TypeError("hybridrt: options are required");
  if (typeof o.url !== "string" || !/^https?:\/\//.test(o.url)) {
    throw new TypeError('hybridrt: options.url must be the service origin, e.g. "https://rt.example.com"');
  }
  if (!Array.isArray(o.channels) || o.channels.length === 0 || !o.channels.every((c) => typeof c === "string" && c !== "")) {
    throw new TypeError("hybridrt: options.channels must name at least one channel");
  }
  if (typeof o.getToken !== "function") throw new TypeError("hybridrt: options.getToken must be a function that resolves to a JWT");
  if (o.cursor != null && !isId(o.cursor)) throw new TypeError("hybridrt: options.cursor must be an event id (a decimal string)");
  if (o.transports && (!Array.isArray(o.transports) || !o.transports.every((t) => t === "websocket" || t === "sse" || t === "polling"))) {
    throw new TypeError('hybridrt: options.transports may hold only "websocket", "sse" and "polling"');
  }
  return o;
}
function safely(fn) {
  try {
    fn();
  } catch (err) {
    const report = globalThis.reportError;
    if (typeof report === "function") report(err);
    else console.error(err);
  }
}
function tabId(random) {
  let s = "";
  for (let i = 0; i < 4; i++) s += Math.floor(random() * 4294967296).toString(36);
  return s;
}
export {
  DEFAULTS,
  HybridError,
  compareIds,
  createHybridRealtime
};
