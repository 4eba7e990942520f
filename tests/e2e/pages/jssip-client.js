// JsSIP test client for Strait's end-to-end tests. The harness drives it
// step by step through window.sip (Chrome DevTools Protocol evaluations)
// and reads its state; nothing here decides whether a test passes.
//
//   await sip.start({ws, uri, password, register, autoAnswer})   connected (and registered)
//   sip.call(target, {codecs, video})  codecs: keep only these rtpmap names in the offer (e.g. ['opus']); video: a camera too
//   sip.answer(), sip.hangup(), await sip.hold(), await sip.unhold()
//   sip.dtmf(digits, transport)   'RFC2833' (default: in the media, RFC 4733) or 'INFO'
//   sip.info(body)                SIP INFO with an application/x-strait-test body (tells sipp what to do next)
//   await sip.refer(target)       blind transfer (REFER); resolves when the NOTIFY says the transfer succeeded
//   await sip.referReplaces(target)  attended transfer: the call held before the current one is referred
//                                 to target replacing the current call (RFC 3891); sip.hangupOther() ends the held one
//   A REFER received is followed (a new call, with the Refer-To's Replaces), and an INVITE with Replaces is
//   answered in place of the call it names: the new call becomes the current one.
//   sip.dropWebSocket()           closes the WebSocket with no BYE and no reconnection
//   await sip.stats()             {packetsReceived, packetsSent, audioEnergy, audioLevel, level}
//   sip.remoteSDP()               the call's remote description
//   sip.state                     {ws, registered, registration, call, cause, code, reason, incoming}
//   sip.snapshot()                state, stats and the event log, for failure artifacts
/* global JsSIP */

const log = document.getElementById('log');

// The fake microphone's tone goes out unprocessed: echo cancellation would
// take the echoed tone for acoustic echo and cut it, and gain control would
// make levels drift between runs.
const MEDIA = { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: false };

class TestClient {
  state = { ws: 'disconnected', registered: false, registration: '', call: 'idle', cause: '', code: 0, reason: '', incoming: 0, held: false, otherEnded: false };
  events = [];
  lastStats = null;
  #ua = null;
  #socket = null;
  #session = null;
  #other = null; // a call kept while another is current (attended transfer)
  #audioCtx = null;
  #analyser = null;

  ev(name, data) {
    this.events.push({ t: Math.round(performance.now()), name, data });
    const line = `EVENT ${name}${data === undefined ? '' : ' ' + JSON.stringify(data)}`;
    console.log(line);
    log.textContent += line + '\n';
  }

  start({ ws, uri, password, register = true, autoAnswer = false, debug = true }) {
    if (debug) JsSIP.debug.enable('JsSIP:Transport JsSIP:RTCSession:*'); else JsSIP.debug.disable();
    this.autoAnswer = autoAnswer;
    this.#audioCtx = new AudioContext();
    this.#audioCtx.resume().catch(() => {});
    this.#socket = new JsSIP.WebSocketInterface(ws);
    const ua = this.#ua = new JsSIP.UA({
      sockets: [this.#socket], uri, password, register,
      session_timers: false, user_agent: 'strait-e2e JsSIP', register_expires: 600,
      connection_recovery_min_interval: 2, connection_recovery_max_interval: 5,
    });
    this.ev('version', JsSIP.version);
    return new Promise((resolve, reject) => {
      ua.on('connecting', () => { this.state.ws = 'connecting'; });
      ua.on('connected', () => { this.state.ws = 'connected'; this.ev('connected'); if (!register) resolve(this.state); });
      ua.on('disconnected', (e) => { this.state.ws = 'disconnected'; this.ev('disconnected', { error: !!(e && e.error) }); });
      ua.on('registered', () => { this.state.registered = true; this.state.registration = 'registered'; this.ev('registered'); resolve(this.state); });
      ua.on('unregistered', () => { this.state.registered = false; this.state.registration = 'unregistered'; this.ev('unregistered'); });
      ua.on('registrationFailed', (e) => {
        const code = e.response ? e.response.status_code : 0;
        this.state.registration = `failed: ${e.cause} ${code}`;
        this.ev('registrationFailed', { cause: e.cause, code });
        reject(new Error(`registration failed: ${e.cause} (${code})`));
      });
      ua.on('newRTCSession', (e) => this.#newSession(e));
      ua.start();
    });
  }

  #newSession(e) {
    const s = e.session;
    const replacing = e.originator === 'remote' && !!e.request && e.request.hasHeader('replaces');
    this.ev('newRTCSession', { originator: e.originator, replacing });
    if (e.originator === 'remote' && !replacing) {
      if (this.#session && !this.#session.isEnded()) { s.terminate({ status_code: 486 }); return; }
      this.state.incoming++;
    }
    if (this.#session && !this.#session.isEnded()) this.#other = this.#session;
    this.#session = s;
    // Only the current call's events change sip.state.
    const current = () => s === this.#session;
    Object.assign(this.state, { call: e.originator === 'remote' ? 'incoming' : 'calling', cause: '', code: 0, reason: '', held: false });
    s.on('progress', (ev) => { const code = ev.response ? ev.response.status_code : 0; if (current()) { this.state.call = 'progress'; this.state.code = code; } this.ev('progress', { code }); });
    s.on('accepted', () => { if (current()) this.state.call = 'accepted'; this.ev('accepted'); });
    s.on('confirmed', () => { if (current()) { this.state.call = 'confirmed'; this.#attachRemote(s.connection); } this.ev('confirmed'); });
    s.on('ended', (ev) => { if (current()) Object.assign(this.state, { call: 'ended', cause: ev.cause }); else this.state.otherEnded = true; this.ev('ended', { cause: ev.cause, originator: ev.originator, current: current() }); });
    s.on('failed', (ev) => {
      const code = ev.message && ev.message.status_code ? ev.message.status_code : 0;
      // A CANCEL's Reason (RFC 3326): "Call completed elsewhere" when
      // another registration of the user answered.
      const reason = ev.message && ev.message.method === 'CANCEL' ? (ev.message.getHeader('Reason') || '') : '';
      if (current()) Object.assign(this.state, { call: 'failed', cause: ev.cause, code, reason });
      this.ev('failed', { cause: ev.cause, code, originator: ev.originator, reason });
    });
    s.on('refer', (ev) => {
      this.ev('refer received', { to: ev.request.refer_to.uri.toString() });
      ev.accept(() => {}, { mediaConstraints: MEDIA, pcConfig: { iceServers: [] } });
    });
    s.on('replaces', (ev) => { this.ev('replaces received'); ev.accept(); });
    s.on('hold', (ev) => { this.state.held = true; this.ev('hold', { originator: ev.originator }); });
    s.on('unhold', (ev) => { this.state.held = false; this.ev('unhold', { originator: ev.originator }); });
    s.on('newDTMF', (ev) => this.ev('dtmf', { originator: ev.originator, tone: ev.dtmf.tone }));
    s.on('sdp', (ev) => {
      if (ev.originator === 'local' && this.codecs) ev.sdp = keepCodecs(ev.sdp, this.codecs);
      this.ev('sdp', { originator: ev.originator, type: ev.type });
    });
    const wire = (pc) => {
      pc.addEventListener('iceconnectionstatechange', () => this.ev('ice', pc.iceConnectionState));
      pc.addEventListener('connectionstatechange', () => this.ev('pc', pc.connectionState));
    };
    if (s.connection) wire(s.connection);
    s.on('peerconnection', (ev) => wire(ev.peerconnection));
    if (e.originator === 'remote' && (this.autoAnswer || replacing)) this.answer();
  }

  call(target, { codecs = null, video = false } = {}) {
    this.codecs = codecs;
    this.ev('call', { target, video });
    this.#ua.call(target, { mediaConstraints: video ? { ...MEDIA, video: true } : MEDIA, pcConfig: { iceServers: [] } });
  }

  answer() {
    this.#session.answer({ mediaConstraints: MEDIA, pcConfig: { iceServers: [] } });
  }

  hangup() { if (this.#session && !this.#session.isEnded()) this.#session.terminate(); }

  // hold and unhold resolve when the re-INVITE's answer is in (JsSIP's
  // own 'hold' event fires when it is sent).
  #reinvite(method) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${method}: no answer to the re-INVITE within 10 s`)), 10000);
      const done = () => { clearTimeout(t); this.ev(`${method} done`); resolve(); };
      if (!this.#session[method]({ useUpdate: false }, done)) { clearTimeout(t); reject(new Error(`${method} refused in state ${this.state.call}`)); }
    });
  }

  hold() { return this.#reinvite('hold'); }
  unhold() { return this.#reinvite('unhold'); }

  dtmf(digits, transport = 'RFC2833') {
    this.#session.sendDTMF(digits, { transportType: transport, duration: 160, interToneGap: 100 });
    this.ev('sendDTMF', { digits, transport });
  }

  info(body) {
    this.#session.sendInfo('application/x-strait-test', body);
    this.ev('sendInfo', body);
  }

  refer(target) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('refer: no final NOTIFY within 10 s')), 10000);
      const fail = (what) => (ev) => {
        clearTimeout(t);
        const code = ev && ev.response ? ev.response.status_code : 0;
        this.ev('refer ' + what, { code });
        reject(new Error(`refer ${what} (${code})`));
      };
      this.#session.refer(target, {
        eventHandlers: {
          requestSucceeded: () => this.ev('refer accepted by the peer'),
          requestFailed: fail('refused'),
          accepted: () => { clearTimeout(t); this.ev('refer done'); resolve(); },
          failed: fail('failed'),
        },
      });
      this.ev('refer', target);
    });
  }

  referReplaces(target) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('referReplaces: no final NOTIFY within 15 s')), 15000);
      const fail = (what) => (ev) => {
        clearTimeout(t);
        const code = ev && ev.response ? ev.response.status_code : 0;
        this.ev('refer ' + what, { code });
        reject(new Error(`refer ${what} (${code})`));
      };
      if (!this.#other || this.#other.isEnded()) { clearTimeout(t); reject(new Error('referReplaces: no held call')); return; }
      this.#other.refer(target, {
        replaces: this.#session,
        eventHandlers: {
          requestSucceeded: () => this.ev('refer accepted by the peer'),
          requestFailed: fail('refused'),
          accepted: () => { clearTimeout(t); this.ev('refer done'); resolve(); },
          failed: fail('failed'),
        },
      });
      this.ev('referReplaces', target);
    });
  }

  hangupOther() { if (this.#other && !this.#other.isEnded()) this.#other.terminate(); }

  dropWebSocket() {
    // Keep JsSIP from reconnecting, then close the socket under it: the
    // server sees the connection go with no BYE.
    this.#socket.connect = () => {};
    this.#socket._ws.close();
    this.ev('dropWebSocket');
  }

  #attachRemote(pc) {
    const audio = document.getElementById('remote');
    const tracks = pc.getReceivers().map((r) => r.track).filter((t) => t && t.kind === 'audio');
    if (!tracks.length) return;
    const stream = new MediaStream(tracks);
    audio.srcObject = stream;
    audio.play().catch(() => {});
    // Chromium feeds remote WebRTC audio to Web Audio only while a media
    // element plays it too.
    this.#analyser = this.#audioCtx.createAnalyser();
    this.#analyser.fftSize = 1024;
    this.#audioCtx.createMediaStreamSource(stream).connect(this.#analyser);
  }

  async stats() {
    const out = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, audioLevel: 0, level: 0 };
    const pc = this.#session && this.#session.connection;
    if (pc && pc.connectionState !== 'closed') {
      (await pc.getStats()).forEach((s) => {
        if (s.kind !== 'audio') return;
        if (s.type === 'inbound-rtp') {
          out.packetsReceived = s.packetsReceived || 0;
          out.audioEnergy = s.totalAudioEnergy || 0;
          out.audioLevel = s.audioLevel || 0;
        } else if (s.type === 'outbound-rtp') {
          out.packetsSent = s.packetsSent || 0;
        }
      });
    }
    if (this.#analyser) {
      const buf = new Float32Array(this.#analyser.fftSize);
      this.#analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      out.level = Math.sqrt(sum / buf.length);
    }
    this.lastStats = out;
    return out;
  }

  // remoteSDP is the call's remote description (what strait answered or
  // offered last), '' without a call.
  remoteSDP() {
    const pc = this.#session && this.#session.connection;
    return pc && pc.remoteDescription ? pc.remoteDescription.sdp : '';
  }

  stop() { if (this.#ua) this.#ua.stop(); }

  snapshot() { return { state: this.state, stats: this.lastStats, events: this.events }; }
}

// keepCodecs removes from an SDP every audio payload type whose rtpmap name
// is not in names (case-insensitive), with its rtpmap, fmtp and rtcp-fb.
function keepCodecs(sdp, names) {
  const want = names.map((n) => n.toLowerCase());
  const lines = sdp.split('\r\n');
  const keep = new Set();
  for (const l of lines) {
    const m = /^a=rtpmap:(\d+) ([^/]+)/.exec(l);
    if (m && want.includes(m[2].toLowerCase())) keep.add(m[1]);
  }
  return lines.filter((l) => {
    const m = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)/.exec(l);
    return !m || keep.has(m[1]);
  }).map((l) => {
    const m = /^(m=audio \S+ \S+) (.*)$/.exec(l);
    return m ? `${m[1]} ${m[2].split(' ').filter((pt) => keep.has(pt)).join(' ')}` : l;
  }).join('\r\n');
}

window.sip = new TestClient();
