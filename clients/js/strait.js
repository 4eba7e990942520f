// Strait's HTTP API from the browser: one ES module, no dependencies, no
// build step. Import it from where you serve it:
//
//   import { Strait } from './strait.js';
//   const strait = new Strait({ base: 'https://strait.example.com', token });
//   const call = await strait.dial('1001');            // microphone -> SIP call; media in call.pc
//   const stop = strait.events((ev) => console.log(ev.state, ev.call));
//   await strait.setPresence('busy', 'in a meeting');
//   await strait.sendMessage('bob', 'hello');
//   await call.hangup();
//
// Errors are thrown as StraitError, which carries the HTTP status and
// Strait's RFC 9457 problem details (type, title, detail, sip_status,
// retry_after). Event streams are read with fetch (EventSource cannot send
// an Authorization header) and reconnect until stopped.
//
// SPDX-License-Identifier: Apache-2.0

/**
 * @typedef {{type?: string, title?: string, status?: number, detail?: string,
 *   sip_status?: number, retry_after?: number}} Problem
 * @typedef {{id: string, caller: string, callee: string, direction: string, state: string,
 *   start: string, answer?: string, session?: string, app?: string}} CallInfo
 * @typedef {{call: string, state: string, time: string, cause?: number, reason?: string,
 *   caller?: string, callee?: string, app?: string}} CallEvent
 * @typedef {{user: string, status: string, note?: string, updated?: string, registered: boolean}} Presence
 * @typedef {{id: string, from: string, to: string, content_type: string, text: string,
 *   time: string, via: string}} Message
 */

/** An API request that failed: status and problem details. */
export class StraitError extends Error {
  /**
   * @param {number} status HTTP status (0 for a network failure)
   * @param {Problem} problem the problem details, as far as the server sent them
   */
  constructor(status, problem) {
    super(`${status} ${problem.detail || problem.title || 'request failed'}`);
    this.name = 'StraitError';
    this.status = status;
    this.problem = problem;
  }
}

const RECONNECT_MS = 2000;

/** A client of one Strait server's HTTP API. */
export class Strait {
  /**
   * @param {{base?: string, token?: string, fetch?: typeof fetch}} [opts]
   *   base: the server's URL, a path in it kept as a prefix (default: this
   *   page's origin); token: the bearer
   *   token (an API key, a signed token, or the operator's); fetch: for tests.
   */
  constructor({ base, token = '', fetch: f } = {}) {
    this.base = new URL(base || globalThis.location?.origin || 'http://127.0.0.1:8080/');
    // API paths resolve under base's own path: a server behind a prefix
    // ('https://example.com/strait/') keeps it.
    if (!this.base.pathname.endsWith('/')) this.base.pathname += '/';
    this.token = token;
    this._fetch = f || globalThis.fetch.bind(globalThis);
  }

  /** @param {string} token the bearer token from now on ('' for none) */
  setToken(token) { this.token = token; }

  /**
   * request sends one API request and returns its parsed body (null for 204).
   * @param {string} method
   * @param {string} path e.g. '/v1/calls'
   * @param {{json?: any, body?: BodyInit, type?: string, signal?: AbortSignal, raw?: boolean}} [o]
   */
  async request(method, path, o = {}) {
    const headers = new Headers({ accept: 'application/json' });
    if (this.token) headers.set('authorization', `Bearer ${this.token}`);
    let body = o.body;
    if (o.json !== undefined) {
      body = JSON.stringify(o.json);
      headers.set('content-type', 'application/json');
    } else if (o.type) {
      headers.set('content-type', o.type);
    }
    let res;
    try {
      res = await this._fetch(this.url(path), { method, headers, body, signal: o.signal });
    } catch (e) {
      if (o.signal?.aborted) throw e;
      throw new StraitError(0, { title: 'network error', detail: String(e.message || e) });
    }
    if (o.raw && res.ok) return res;
    const text = await res.text();
    if (!res.ok) {
      let problem;
      try { problem = JSON.parse(text); } catch { problem = { detail: text.trim() || res.statusText }; }
      throw new StraitError(res.status, problem);
    }
    if (!text) return null;
    return (res.headers.get('content-type') || '').includes('json') ? JSON.parse(text) : text;
  }

  /**
   * url resolves an API path ('/v1/calls') under base; an absolute URL
   * (a WHIP session's) is taken as it is.
   * @param {string} path
   */
  url(path) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return new URL(path);
    return new URL(path.replace(/^\/+/, ''), this.base);
  }

  // --- calls ---

  /**
   * call places a call from a complete WebRTC offer (all ICE candidates
   * gathered: Strait takes no trickle) and resolves with the answer when
   * the callee answers (or at its first early media with early).
   * @param {string} to a user, a number or a sip: URI
   * @param {string} offer the SDP offer
   * @param {{early?: boolean, signal?: AbortSignal}} [o]
   * @returns {Promise<{id: string, answer: string}>}
   */
  call(to, offer, o = {}) {
    return this.request('POST', '/v1/calls', { json: { to, offer, early: o.early || undefined }, signal: o.signal });
  }

  /**
   * dial makes the RTCPeerConnection too: the stream's tracks (default: the
   * microphone) are sent, the remote audio arrives on pc's track event.
   * @param {string} to
   * @param {{stream?: MediaStream, early?: boolean, signal?: AbortSignal, gatherMs?: number}} [o]
   * @returns {Promise<{id: string, pc: RTCPeerConnection, stream: MediaStream, hangup: () => Promise<void>}>}
   */
  async dial(to, o = {}) {
    const stream = o.stream || await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    try {
      stream.getTracks().forEach((t) => pc.addTrack(t, stream));
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, o.gatherMs ?? 5000);
      const { id, answer } = await this.call(to, pc.localDescription.sdp, o);
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      return { id, pc, stream, hangup: async () => { pc.close(); await this.hangup(id).catch(() => {}); } };
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  /** @returns {Promise<CallInfo[]>} the calls the token may see */
  async calls() { return (await this.request('GET', '/v1/calls')).calls; }

  /** @param {string} id @returns {Promise<CallInfo>} */
  getCall(id) { return this.request('GET', `/v1/calls/${encodeURIComponent(id)}`); }

  /** hangup ends a call (CANCEL while ringing). @param {string} id */
  async hangup(id) { await this.request('DELETE', `/v1/calls/${encodeURIComponent(id)}`); }

  /** dtmf sends digits as SIP INFO (501 when the callee takes none). */
  async dtmf(id, digits) { await this.request('POST', `/v1/calls/${encodeURIComponent(id)}/dtmf`, { json: { digits } }); }

  /**
   * answer gives a call routed to a web app (--app) the app's SDP answer;
   * reject refuses it with a SIP status. Token scope receive:APP.
   */
  async answer(id, sdp) { await this.request('POST', `/v1/calls/${encodeURIComponent(id)}/answer`, { json: { answer: sdp } }); }

  /** @param {string} id @param {number} [status] SIP status, default 603 */
  async reject(id, status = 603) { await this.request('POST', `/v1/calls/${encodeURIComponent(id)}/answer`, { json: { reject: status } }); }

  /**
   * events follows call events (ringing, early, answered, ended) for every
   * call the token may see, or one call's. Returns a function that stops.
   * @param {(ev: CallEvent) => void} onEvent
   * @param {{call?: string, onOpen?: () => void, onError?: (e: Error) => void, onEnd?: () => void}} [o]
   */
  events(onEvent, o = {}) {
    const path = o.call ? `/v1/calls/${encodeURIComponent(o.call)}/events` : '/v1/events';
    return this.stream(path, (_name, data) => onEvent(data), { ...o, once: !!o.call });
  }

  // --- history ---

  /**
   * history reads the token's user's call records, newest first.
   * @param {{limit?: number, before?: string, user?: string}} [o]
   * @returns {Promise<{calls: object[], next?: string}>}
   */
  history(o = {}) {
    const q = new URLSearchParams();
    for (const k of ['limit', 'before', 'user']) if (o[k] !== undefined) q.set(k, String(o[k]));
    return this.request('GET', `/v1/history${q.size ? `?${q}` : ''}`);
  }

  // --- presence and contacts ---

  /** @param {'available'|'away'|'busy'|'dnd'|'offline'} status @param {string} [note] @returns {Promise<Presence>} */
  setPresence(status, note) { return this.request('PUT', '/v1/presence', { json: { status, note } }); }

  /** @param {string} user @returns {Promise<Presence>} */
  presence(user) { return this.request('GET', `/v1/presence/${encodeURIComponent(user)}`); }

  /** @returns {Promise<Presence[]>} the shared address book with presence */
  async contacts() { return (await this.request('GET', '/v1/contacts')).contacts; }

  /**
   * presenceEvents follows presence changes: everyone's, or with o.users
   * only theirs (in trunk mode Strait then subscribes to them at the PBX).
   * @param {(p: Presence) => void} onPresence
   * @param {{users?: string[], onOpen?: () => void, onError?: (e: Error) => void}} [o]
   */
  presenceEvents(onPresence, o = {}) {
    const q = new URLSearchParams();
    for (const u of o.users || []) q.append('user', u);
    const path = '/v1/events/presence' + (q.size ? `?${q}` : '');
    return this.stream(path, (_n, d) => onPresence(d), o);
  }

  // --- messages ---

  /**
   * sendMessage sends an instant message as the token's user. delivery is
   * "delivered", "stored" (the recipient is offline: kept until it comes
   * online; HTTP 202) or "undelivered".
   * @returns {Promise<{id: string, sip_status: number, delivery: string}>}
   */
  sendMessage(to, text) { return this.request('POST', '/v1/messages', { json: { to, text } }); }

  /** messages follows the token's user's instant messages. @param {(m: Message) => void} onMessage */
  messages(onMessage, o = {}) { return this.stream('/v1/events/messages', (_n, d) => onMessage(d), o); }

  /** keptMessages fetches (and removes) the messages kept while the user was offline. @returns {Promise<{messages: Message[]}>} */
  keptMessages() { return this.request('GET', '/v1/messages'); }

  // --- WHIP (RFC 9725) ---

  /**
   * whip publishes an offer as a call to callee; resolves with the answer
   * and the session's URL (DELETE it with whipStop).
   * @returns {Promise<{answer: string, location: string}>}
   */
  async whip(callee, offer) {
    const res = await this.request('POST', `/whip/${encodeURIComponent(callee)}`, { body: offer, type: 'application/sdp', raw: true });
    return { answer: await res.text(), location: new URL(res.headers.get('location'), this.base).href };
  }

  /** @param {string} location the whip() session URL */
  async whipStop(location) { await this.request('DELETE', location); }

  // --- server-sent events ---

  /**
   * stream reads a text/event-stream at path, calling onEvent(name, data)
   * with data parsed as JSON, and reconnects after a broken stream unless
   * once. Returns a function that stops it. onEnd is called when the
   * stream ends for good other than by that function (once and over, or
   * refused with a 4xx that will not change).
   * @param {string} path
   * @param {(name: string, data: any) => void} onEvent
   * @param {{once?: boolean, onError?: (e: Error) => void, onOpen?: () => void, onEnd?: () => void}} [o]
   */
  stream(path, onEvent, o = {}) {
    const abort = new AbortController();
    const run = async () => {
      while (!abort.signal.aborted) {
        try {
          const res = await this.request('GET', path, { signal: abort.signal, raw: true });
          o.onOpen?.();
          await readEvents(res.body, onEvent);
        } catch (e) {
          if (abort.signal.aborted) return;
          o.onError?.(e);
          if (e instanceof StraitError && e.status >= 400 && e.status < 500 && e.status !== 429) return; // won't get better
        }
        if (o.once) return;
        await new Promise((r) => setTimeout(r, RECONNECT_MS));
      }
    };
    run().then(() => { if (!abort.signal.aborted) o.onEnd?.(); });
    return () => abort.abort();
  }
}

/** gathered resolves when pc has all its ICE candidates, or after ms. */
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); pc.removeEventListener('icegatheringstatechange', check); resolve(); }
    function check() { if (pc.iceGatheringState === 'complete') done(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/**
 * readEvents parses a text/event-stream body (the WHATWG format): events
 * named by "event:", data lines joined, comments skipped.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(name: string, data: any) => void} onEvent
 */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', name = '', data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length) {
          const text = data.join('\n');
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* text */ }
          onEvent(name || 'message', parsed);
        }
        name = '';
        data = [];
      } else if (!line.startsWith(':')) {
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
    }
  }
}
