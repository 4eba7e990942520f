import { startRegistration } from './sip.js';
import { Strait, StraitError } from './strait.js';

// The web phone's model (the page, app.js, renders it). It places calls
// through Strait's HTTP API with the browser's own RTCPeerConnection, every
// API request made by Strait's JavaScript client (strait.js, served beside
// this file from clients/js), and receives calls once signed in: it then
// registers over SIP over WebSocket with the bundled JsSIP (sip.js), rings,
// and answers or declines. Nothing is loaded from elsewhere.
//
// A call: getUserMedia, createOffer, wait until ICE gathering is complete
// (Strait takes a whole offer, no trickle), strait.call (POST /v1/calls
// {to, offer} -> 201 {id, answer}), setRemoteDescription(answer). The
// call's events come from its server-sent event stream (strait.events with
// the call); when that stream ends before the call did, the page polls
// strait.getCall. Hang up is strait.hangup, DTMF strait.dtmf (RFC 4733 in
// the media when the callee takes no SIP INFO).
//
// window.phone is the page's model, for people and for tests:
//   phone.state    idle | starting | calling | ringing | incoming | connecting | connected | ended | failed
//   phone.registration  off | connecting | registered | unregistered | failed (receiving calls), phone.sipUser
//   phone.register(user, password), phone.unregister(), phone.answer(), phone.decline()
//   phone.ringing  whether the phone rings (an incoming call); phone.ringLevel()
//                  the ring tone's level now (0 between its bursts)
//   phone.reason   why the last call ended or failed
//   phone.callId   the API's id of the current call
//   phone.level    the level meter, 0..1 (received audio, through an AnalyserNode)
//   phone.stats    {packetsReceived, packetsSent, audioEnergy, audioLevel, rttMs, lossPct, jitterMs},
//                  refreshed every STATS_INTERVAL_MS (call quality from getStats: RTT of the ICE path,
//                  inbound loss and jitter)
//   phone.micId, phone.microphones()   the chosen microphone ('' default) and the inputs
//   phone.recentCalls(limit)          the token's user's call log (GET /v1/history), null without one
//   phone.events   [{t, type, detail}], what happened, oldest first
//   phone.dial(to), phone.hangup(), phone.dtmf(digits), phone.setMuted(bool), phone.setToken(token)
//   (the token, asked for when the API answers 401, is kept in sessionStorage for this tab)

const ICE_GATHER_TIMEOUT_MS = 5000; // host candidates take milliseconds; a stalled STUN server must not hang the dial
const STATS_INTERVAL_MS = 500;
const POLL_INTERVAL_MS = 2000;      // call state polling when there is no event stream
const METER_INTERVAL_MS = 50;
const DTMF_DIGITS = /^[0-9A-D*#]+$/i;

// The API's bearer token, when the server needs one (401): asked for in
// the page, kept for this tab only (sessionStorage), sent on every request.
const TOKEN_KEY = 'strait.token';

// TokenNeeded is thrown when the API refuses the page's credentials.
class TokenNeeded extends Error {}

const ACTIVE = new Set(['starting', 'calling', 'ringing', 'incoming', 'connecting', 'connected']);

// Ring cadence of an incoming call: 440+480 Hz (the North American ring),
// two seconds on, four off.
const RING_ON_MS = 2000;
const RING_PERIOD_MS = 6000;

/** Phone is the web phone's model: one call at a time, out or in. */
export class Phone extends EventTarget {
  state = 'idle';
  reason = '';
  callId = null;
  to = '';
  muted = false;
  level = 0;
  stats = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, audioLevel: 0 };
  events = [];
  connectedAt = 0;

  #pc = null;
  #mic = null;
  #abort = null;  // aborts the POST and the event stream of the current call
  #timers = [];
  #audioCtx = null;
  #analyser = null;
  #audio;
  #incoming = null; // the incoming call being offered or in progress (sip.js)
  #reg = null;      // the registration (sip.js)
  #ringTimer = null;
  #ringTap = null;  // an analyser on the ring tone's output (ringLevel)
  // The API's client, relative to the page so that a reverse proxy may
  // mount both under one prefix.
  #api = new Strait({ base: new URL('./', document.baseURI).href, token: sessionStorage.getItem(TOKEN_KEY) || '' });

  registration = 'off';
  registrationCause = '';
  sipUser = '';
  ringing = false;

  constructor(audio) {
    super();
    this.#audio = audio;
  }

  get active() { return ACTIVE.has(this.state); }

  #log(type, detail) {
    this.events.push({ t: Math.round(performance.now()), type, detail });
    if (this.events.length > 500) this.events.shift();
  }

  #set(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.#log('state', reason ? `${state}: ${reason}` : state);
    this.dispatchEvent(new Event('change'));
  }

  // dial places a call to `to` (a user, a number or a SIP URI). It resolves
  // once the answer is applied; media connects a moment later (state
  // "connected"). Failures set state "failed" and are not thrown.
  async dial(to) {
    to = String(to || '').trim();
    if (!to) throw new Error('nothing to dial');
    if (this.active) throw new Error(`already in a call (${this.state})`);
    this.to = to;
    this.callId = null;
    this.connectedAt = 0;
    this.level = 0;
    this.stats = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, audioLevel: 0 };
    const abort = this.#abort = new AbortController();
    this.#set('starting');
    try {
      // The AudioContext is made here, inside the user's click, so that the
      // autoplay policy lets it run.
      this.#audioCtx ??= new AudioContext();
      this.#audioCtx.resume().catch(() => {});
      const audio = this.micId ? { deviceId: { exact: this.micId } } : true;
      const mic = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      this.dispatchEvent(new Event('devices')); // labels are readable once allowed
      if (abort.signal.aborted) { mic.getTracks().forEach((t) => t.stop()); return; }
      this.#mic = mic;
      this.#mic.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
      const pc = this.#pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      this.#mic.getTracks().forEach((t) => pc.addTrack(t, this.#mic));
      pc.ontrack = (e) => this.#remoteTrack(e.streams[0] || new MediaStream([e.track]));
      pc.onconnectionstatechange = () => this.#connectionState(pc);
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, ICE_GATHER_TIMEOUT_MS);
      if (abort.signal.aborted) return;
      this.#set('calling');
      let body;
      try {
        body = await this.#api.call(to, pc.localDescription.sdp, { signal: abort.signal });
      } catch (e) {
        if (e instanceof StraitError && e.status === 401) {
          throw new TokenNeeded(this.#api.token ? 'the API token was refused' : 'this server needs an API token');
        }
        throw e;
      }
      if (!body?.id || !body.answer) throw new Error('the API answered without id or answer');
      this.callId = body.id;
      this.#log('call', body.id);
      if (abort.signal.aborted) { this.#delete(body.id); return; }
      this.#watch(body.id, abort.signal);
      this.#set('connecting');
      await pc.setRemoteDescription({ type: 'answer', sdp: body.answer });
      this.#every(STATS_INTERVAL_MS, () => this.#readStats());
    } catch (e) {
      if (abort.signal.aborted) return;
      const id = this.callId;
      if (e instanceof TokenNeeded) this.dispatchEvent(new Event('token'));
      this.#end('failed', e.message || String(e));
      if (id) this.#delete(id);
    }
  }

  // register signs in as user (SIP digest password; any in Strait's open
  // demo mode) so that calls to user ring here.
  register(user, password) {
    this.unregister();
    // Made inside the sign-in click so that the ring may sound later.
    this.#audioCtx ??= new AudioContext();
    this.#audioCtx.resume().catch(() => {});
    this.#reg = startRegistration({
      user, password,
      onState: (state, cause) => {
        this.registration = state;
        this.registrationCause = cause;
        this.#log('registration', cause ? `${state}: ${cause}` : state);
        this.dispatchEvent(new Event('change'));
      },
      onIncoming: (call) => this.#offered(call),
    });
    this.sipUser = this.#reg.uri;
  }

  // unregister stops receiving calls.
  unregister() {
    if (!this.#reg) return;
    const reg = this.#reg;
    this.#reg = null;
    reg.stop();
    this.sipUser = '';
    this.registration = 'off';
    this.dispatchEvent(new Event('change'));
  }

  // #offered takes an incoming call: it rings unless the phone is busy.
  #offered(call) {
    if (this.active) {
      this.#log('incoming', `${call.from}: busy`);
      call.decline();
      return;
    }
    this.#incoming = call;
    this.to = call.fromName && call.fromName !== call.from ? `${call.fromName} (${call.from})` : call.from;
    this.callId = null;
    this.connectedAt = 0;
    this.level = 0;
    this.stats = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, audioLevel: 0 };
    call.on('ended', (cause) => {
      if (this.#incoming !== call) return;
      this.#incoming = null;
      this.#end('ended', cause === 'Terminated' || cause === 'Bye' ? 'remote hung up' : cause);
    });
    this.#set('incoming');
    this.#ring(true);
  }

  // answer answers the incoming call with the microphone.
  async answer() {
    const call = this.#incoming;
    if (!call || this.state !== 'incoming') throw new Error('no incoming call');
    this.#ring(false);
    this.#set('connecting');
    try {
      const audio = this.micId ? { deviceId: { exact: this.micId } } : true;
      const mic = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      if (this.#incoming !== call) { mic.getTracks().forEach((t) => t.stop()); return; }
      this.#mic = mic;
      this.#mic.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
      call.answer(mic, (pc) => {
        if (this.#pc === pc) return;
        this.#pc = pc;
        pc.addEventListener('track', (e) => this.#remoteTrack(e.streams[0] || new MediaStream([e.track])));
        pc.addEventListener('connectionstatechange', () => this.#connectionState(pc));
      });
      this.#every(STATS_INTERVAL_MS, () => this.#readStats());
    } catch (e) {
      call.decline();
      this.#incoming = null;
      this.#end('failed', e.message || String(e));
    }
  }

  // decline refuses the incoming call (603 Decline).
  decline() {
    const call = this.#incoming;
    if (!call || this.state !== 'incoming') return;
    this.#incoming = null;
    call.decline();
    this.#end('ended', 'declined');
  }

  // #ring starts or stops the ring tone.
  #ring(on) {
    clearInterval(this.#ringTimer);
    this.#ringTimer = null;
    this.ringing = on;
    if (!on) return;
    const burst = () => {
      const ctx = this.#audioCtx;
      if (!ctx || !this.ringing) return;
      const gain = ctx.createGain();
      gain.gain.value = 0.08;
      gain.connect(ctx.destination);
      // The ring also feeds an analyser, so that ringLevel() tells what
      // the speaker is given (tests, and a meter if the page wants one).
      this.#ringTap ??= ctx.createAnalyser();
      gain.connect(this.#ringTap);
      for (const hz of [440, 480]) {
        const o = ctx.createOscillator();
        o.frequency.value = hz;
        o.connect(gain);
        o.start();
        o.stop(ctx.currentTime + RING_ON_MS / 1000);
      }
    };
    burst();
    this.#ringTimer = setInterval(burst, RING_PERIOD_MS);
    navigator.vibrate?.([RING_ON_MS]);
  }

  // ringLevel is the RMS level (0..1) of the ring tone being played now:
  // above 0 during a ring burst, 0 between bursts and when not ringing.
  ringLevel() {
    const a = this.#ringTap;
    if (!a || !this.ringing || this.#audioCtx?.state !== 'running') return 0;
    const buf = new Float32Array(a.fftSize);
    a.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    return Math.sqrt(sum / buf.length);
  }

  // recentCalls returns the newest calls of the token's user (GET
  // /v1/history), or null when the API keeps none for this credential
  // (no user, no scope, no token yet).
  async recentCalls(limit = 10) {
    try {
      return (await this.#api.history({ limit })).calls || [];
    } catch {
      return null;
    }
  }

  // micId is the chosen microphone's deviceId ('' for the default); it
  // applies from the next call.
  micId = '';

  // microphones lists the audio inputs ({deviceId, label}).
  async microphones() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return all.filter((d) => d.kind === 'audioinput').map((d, i) => ({ deviceId: d.deviceId, label: d.label || `Microphone ${i + 1}` }));
  }

  // setToken sets the API's bearer token for this tab ('' forgets it).
  setToken(token) {
    this.#api.setToken(token);
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    this.#log('token', token ? 'set' : 'cleared');
  }

  // hangup ends the current call, or stops one being set up (an incoming
  // call not yet answered is declined).
  async hangup() {
    if (!this.active) return;
    if (this.#incoming) {
      const call = this.#incoming;
      if (this.state === 'incoming') { this.decline(); return; }
      this.#incoming = null;
      call.hangup();
      this.#end('ended', 'hung up');
      return;
    }
    const id = this.callId;
    this.#end('ended', 'hung up');
    if (id) await this.#delete(id);
  }

  // dtmf sends digits (0-9, A-D, * and #) through the API, or in band
  // (RFC 4733, from the browser) if the API has no DTMF endpoint.
  async dtmf(digits) {
    digits = String(digits);
    if (!DTMF_DIGITS.test(digits)) throw new Error(`not DTMF digits: ${digits}`);
    if (this.state === 'connected' && this.#incoming) {
      this.#incoming.sendDTMF(digits); // RFC 4733 from the browser
      this.#log('dtmf', `${digits} (in band)`);
      return 'rtp';
    }
    if (this.state !== 'connected' || !this.callId) throw new Error('no call to send DTMF in');
    try {
      await this.#api.dtmf(this.callId, digits);
      this.#log('dtmf', digits);
      return 'api';
    } catch (e) {
      // The callee takes no SIP INFO (501; 404 or 405 from an API without
      // the endpoint): RFC 4733 events in the media instead.
      if (e instanceof StraitError && [404, 405, 501].includes(e.status)) {
        const sender = this.#pc && this.#pc.getSenders().find((s) => s.dtmf && s.dtmf.canInsertDTMF);
        if (sender) { sender.dtmf.insertDTMF(digits, 100, 70); this.#log('dtmf', `${digits} (in band)`); return 'rtp'; }
      }
      this.#log('error', `dtmf: ${e.message}`);
      throw e;
    }
  }

  setMuted(muted) {
    this.muted = !!muted;
    if (this.#mic) this.#mic.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
    this.#log('mute', this.muted);
    this.dispatchEvent(new Event('change'));
  }

  #delete(id) {
    return this.#api.hangup(id).catch((e) => {
      if (!(e instanceof StraitError && e.status === 404)) this.#log('error', `hang up: ${e.message}`);
    });
  }

  #remoteTrack(stream) {
    this.#audio.srcObject = stream;
    this.#audio.play().catch(() => {});
    if (!this.#audioCtx) return;
    // Chromium feeds a remote WebRTC track to Web Audio only while it also
    // plays in a media element, hence both.
    const src = this.#audioCtx.createMediaStreamSource(stream);
    this.#analyser = this.#audioCtx.createAnalyser();
    this.#analyser.fftSize = 1024;
    src.connect(this.#analyser);
    const buf = new Float32Array(this.#analyser.fftSize);
    this.#every(METER_INTERVAL_MS, () => {
      if (!this.#analyser) return;
      this.#analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const rms = Math.sqrt(sum / buf.length);
      // -60 dBFS .. 0 dBFS onto 0..1; fall back slowly so the meter is readable.
      const now = rms > 0 ? Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60)) : 0;
      this.level = Math.max(now, this.level * 0.8);
      this.dispatchEvent(new Event('level'));
    });
  }

  #connectionState(pc) {
    if (pc !== this.#pc) return;
    this.#log('pc', pc.connectionState);
    if (pc.connectionState === 'connected' && this.state === 'connecting') {
      this.connectedAt = performance.now();
      this.#set('connected');
    } else if (pc.connectionState === 'failed' && this.active) {
      this.#end('failed', 'media connection failed');
      if (this.callId) this.#delete(this.callId);
    }
  }

  async #readStats() {
    const pc = this.#pc;
    if (!pc) return;
    const st = { ...this.stats };
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined) {
        // Round trip of the ICE consent checks: the path's RTT.
        st.rttMs = Math.round(s.currentRoundTripTime * 1000);
      }
      if (s.kind !== 'audio') return;
      if (s.type === 'inbound-rtp') {
        st.packetsReceived = s.packetsReceived || 0;
        st.audioEnergy = s.totalAudioEnergy || 0;
        st.audioLevel = s.audioLevel || 0;
        const lost = Math.max(0, s.packetsLost || 0);
        st.lossPct = st.packetsReceived + lost ? (100 * lost) / (st.packetsReceived + lost) : 0;
        st.jitterMs = Math.round((s.jitter || 0) * 1000);
      } else if (s.type === 'outbound-rtp') {
        st.packetsSent = s.packetsSent || 0;
      } else if (s.type === 'remote-inbound-rtp' && s.roundTripTime !== undefined && st.rttMs === undefined) {
        st.rttMs = Math.round(s.roundTripTime * 1000); // from the far end's RTCP, when there is no ICE figure
      }
    });
    if (pc === this.#pc) { this.stats = st; this.dispatchEvent(new Event('stats')); }
  }

  // #watch follows the call's events on its stream; when the stream ends
  // (or is refused) while the call goes on, it polls the call instead.
  #watch(id, signal) {
    const stop = this.#api.events((ev) => this.#callEvent(id, ev.state || 'message', ev), {
      call: id,
      onOpen: () => this.#log('events', `call ${id}`),
      onEnd: () => this.#poll(id, signal),
    });
    signal.addEventListener('abort', stop, { once: true });
  }

  // #poll reads the call every POLL_INTERVAL_MS until it is over.
  async #poll(id, signal) {
    while (!signal.aborted && this.callId === id && this.active) {
      await sleep(POLL_INTERVAL_MS);
      if (signal.aborted) return;
      try {
        this.#callEvent(id, 'poll', await this.#api.getCall(id));
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof StraitError && (e.status === 404 || e.status === 410)) { this.#callEvent(id, 'ended', {}); return; }
      }
    }
  }

  // #callEvent takes an event from the stream (or a polled call) in
  // whichever shape the server writes it: the SSE event name, or a type,
  // event, state or status field of a JSON body.
  #callEvent(id, name, data) {
    if (this.callId !== id || !this.active) return;
    if (data && typeof data === 'object') {
      const about = data.call ?? data.call_id ?? data.callId ?? data.id;
      if (about !== undefined && about !== id) return;
    }
    const kind = [name, data && (data.type ?? data.event ?? data.state ?? data.status)]
      .filter((s) => typeof s === 'string').join(' ').toLowerCase();
    if (name !== 'poll') this.#log('event', kind);
    if (/ringing|progress|early/.test(kind) && this.state === 'calling') this.#set('ringing');
    if (/end|hangup|hung|bye|terminat|closed|fail|cancel|reject|gone/.test(kind)) {
      const why = data && (data.reason ?? data.cause ?? data.error);
      this.#end('ended', typeof why === 'string' && why ? why : 'remote hung up');
    }
  }

  #every(ms, f) { this.#timers.push(setInterval(f, ms)); }

  // #end releases everything the call held and enters a final state.
  #end(state, reason) {
    this.#ring(false);
    if (this.#incoming) { this.#incoming.hangup(); this.#incoming = null; }
    if (this.#abort) this.#abort.abort();
    this.#abort = null;
    this.#timers.forEach(clearInterval);
    this.#timers = [];
    if (this.#pc) this.#pc.close();
    this.#pc = null;
    if (this.#mic) this.#mic.getTracks().forEach((t) => t.stop());
    this.#mic = null;
    this.#analyser = null;
    this.#audio.srcObject = null;
    this.level = 0;
    this.#set(state, reason);
  }
}

// iceGathered resolves when pc has gathered all candidates, or after ms.
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

