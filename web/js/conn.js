// The connection to the server: one SockJS socket at a time, reconnected with back-off, with
// requests matched to their replies by rid (DESIGN §3). Pushes (frames without a rid) are
// dispatched as 'push' events. The class knows nothing about logins or conversations.

/** ServerError is an error reply from the server: {cmd, rid, error}. */
export class ServerError extends Error {
  constructor(cmd, message) {
    super(message);
    this.name = 'ServerError';
    this.cmd = cmd;
  }
}

/** ConnectionError: the request could not be sent or its reply was lost with the connection. */
export class ConnectionError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConnectionError';
  }
}

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10_000;
// The server sends a SockJS heartbeat every 10 s; a socket silent for longer than two of them
// is dead even if the browser has not noticed (e.g. a laptop that slept, a NAT that forgot us).
const SILENCE_LIMIT_MS = 25_000;
// A request unanswered this long, with nothing else heard meanwhile, means the same sooner: a
// half-dead socket must not show "Online" and "Sending…" for long.
const REPLY_SILENCE_MS = 8_000;
const WATCHDOG_EVERY_MS = 2_000;

export class Connection extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.url         the SockJS endpoint (e.g. "/ws")
   * @param {string[]} [opts.transports] SockJS transports to allow (default: all)
   * @param {number} [opts.rate]      requests per second we allow ourselves (the server allows 20)
   * @param {number} [opts.burst]     requests we may send at once (the server allows 100)
   * @param {number} [opts.timeout]   ms to wait for a reply
   */
  constructor({url, transports, rate = 15, burst = 60, timeout = 20_000}) {
    super();
    this.url = url;
    this.transports = transports;
    this.timeout = timeout;
    this.sock = null;
    this.transport = '';
    this.wanted = false; // start() called and stop() not since
    this.attempt = 0;
    this.retryTimer = 0;
    this.ridSeq = 0;
    this.pending = new Map(); // rid → {resolve, reject, timer, cmd}
    this.lastFrame = 0;
    this.watchdog = 0;
    // Token bucket: requests wait their turn in order, so we never trip the server's limit.
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.refilled = performance.now();
    this.gate = Promise.resolve();

    window.addEventListener('offline', () => this.dropForOffline());
    window.addEventListener('online', () => this.reconnectNow());
  }

  get isOpen() {
    return this.sock !== null && this.sock.readyState === 1; // SockJS.OPEN
  }

  /** start connects and keeps reconnecting until stop(). */
  start() {
    this.wanted = true;
    if (!this.sock && !this.retryTimer) this.connect();
  }

  /** stop closes the socket for good (logout). */
  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    if (this.sock) this.sock.close(1000, 'bye');
  }

  /** resetBackoff: the connection proved healthy (logged in), so the next drop retries fast. */
  resetBackoff() {
    this.attempt = 0;
  }

  /** reconnectNow skips the back-off wait, e.g. when the browser reports it is online again. */
  reconnectNow() {
    if (!this.wanted || this.sock) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    this.attempt = 0;
    this.connect();
  }

  /** dropForOffline closes the socket when the browser goes offline: it cannot work, and a
   * socket the browser keeps half-open would make the app believe it is still connected. */
  dropForOffline() {
    if (this.sock) this.sock.close(1000, 'browser offline');
  }

  connect() {
    this.retryTimer = 0;
    if (!this.wanted) return;
    if (!navigator.onLine) {
      // Wait for the 'online' event instead of burning attempts; no socket can work now.
      this.emit('state', {state: 'offline'});
      return;
    }
    this.emit('state', {state: 'connecting'});
    const options = this.transports ? {transports: this.transports} : {};
    const sock = new SockJS(this.url, null, options);
    this.sock = sock;
    sock.onopen = () => {
      this.transport = sock.transport || '';
      this.lastFrame = Date.now();
      this.startWatchdog();
      this.emit('open', {transport: this.transport});
    };
    sock.onmessage = (e) => {
      this.lastFrame = Date.now();
      this.receive(e.data);
    };
    sock.addEventListener('heartbeat', () => {
      this.lastFrame = Date.now();
    });
    sock.onclose = (e) => {
      if (this.sock !== sock) return;
      this.sock = null;
      this.transport = '';
      clearInterval(this.watchdog);
      this.failPending('connection lost');
      this.emit('close', {code: e.code, reason: e.reason});
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (!this.wanted || this.retryTimer) return;
    if (!navigator.onLine) {
      this.emit('state', {state: 'offline'});
      return; // the 'online' event reconnects
    }
    // Exponential back-off with "equal jitter": between half and all of the capped delay, so
    // that clients dropped together by a restart do not come back together.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.emit('state', {state: 'waiting', retryAt: Date.now() + delay});
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startWatchdog() {
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      if (!this.sock) return;
      const now = Date.now();
      const silent = now - this.lastFrame;
      const unanswered = [...this.pending.values()].some((w) => now - w.sent > REPLY_SILENCE_MS && w.sent > this.lastFrame);
      if (silent > SILENCE_LIMIT_MS || (unanswered && silent > REPLY_SILENCE_MS)) {
        this.sock.close(4000, 'server silent'); // onclose reconnects and fails what is pending
      }
    }, WATCHDOG_EVERY_MS);
  }

  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('pingedchat: ignoring a frame that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    const waiter = typeof msg.rid === 'string' ? this.pending.get(msg.rid) : undefined;
    if (waiter) {
      this.pending.delete(msg.rid);
      clearTimeout(waiter.timer);
      if (typeof msg.error === 'string') waiter.reject(new ServerError(msg.cmd || waiter.cmd, msg.error));
      else waiter.resolve(msg);
      return;
    }
    if (typeof msg.rid === 'string') return; // the reply to a request we gave up on
    this.emit('push', msg);
  }

  /**
   * request sends {cmd, rid, …fields} and resolves with the direct reply, or rejects with a
   * ServerError (the server's words) or a ConnectionError.
   */
  request(cmd, fields = {}) {
    const turn = this.gate.then(() => this.takeToken());
    this.gate = turn.catch(() => {});
    return turn.then(() => this.sendNow(cmd, fields));
  }

  sendNow(cmd, fields) {
    if (!this.isOpen) return Promise.reject(new ConnectionError('not connected'));
    const rid = `r${++this.ridSeq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new ConnectionError('no reply from the server'));
      }, this.timeout);
      this.pending.set(rid, {resolve, reject, timer, cmd, sent: Date.now()});
      this.sock.send(JSON.stringify({...fields, cmd, rid}));
    });
  }

  async takeToken() {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilled) / 1000) * this.rate);
      this.refilled = now;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await new Promise((r) => setTimeout(r, ((1 - this.tokens) / this.rate) * 1000));
    }
  }

  failPending(reason) {
    for (const w of this.pending.values()) {
      clearTimeout(w.timer);
      w.reject(new ConnectionError(reason));
    }
    this.pending.clear();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }
}
