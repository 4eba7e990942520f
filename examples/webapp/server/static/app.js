// The example app's page: it answers the calls Strait routes to the app.
//
// 1. GET session (this page's backend): Strait's URL, the app's name and a
//    token of scope receive:APP.
// 2. strait.events(): Strait's event stream; a "ringing" event naming this
//    app is a call for it (caller and callee shown at once).
// 3. GET offers/{call} (the backend, which took Strait's signed webhook and
//    answered it 202): the call's WebRTC offer.
// 4. Answer: the page's own RTCPeerConnection answers the offer (all ICE
//    candidates gathered: Strait takes no trickle) and strait.answer()
//    hands the answer to Strait; the caller's audio plays, the microphone
//    goes to the caller. Decline: strait.reject() with the chosen SIP
//    status. Hang up: strait.hangup().
//
// window.app is the page's model, for people and tests: state (starting |
// waiting | incoming | connecting | connected | ended | failed), reason,
// call {id, caller, callee}, stats {packetsReceived, packetsSent,
// audioEnergy, audioLevel}, level (the analyser's RMS of the caller's
// audio, 0..1), events, and answer(), decline(status), hangup().
//
// SPDX-License-Identifier: Apache-2.0

import { Strait, StraitError } from './strait.js';

const GATHER_MS = 5000;
const STATS_MS = 500;
const METER_MS = 50;
const ACTIVE = new Set(['incoming', 'connecting', 'connected']);

class AppPage extends EventTarget {
  state = 'starting';
  reason = '';
  call = null;
  stats = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, audioLevel: 0 };
  level = 0;
  events = [];
  app = '';
  listening = false;

  #strait = null;
  #stopEvents = null;
  #offer = null;  // a promise of the ringing call's offer SDP
  #pc = null;
  #mic = null;
  #timers = [];
  #audio;
  #audioCtx = null;

  constructor(audio) {
    super();
    this.#audio = audio;
  }

  get active() { return ACTIVE.has(this.state); }

  #log(type, detail) {
    const t = Math.round(performance.now());
    console.debug(`${t} ${type}: ${detail}`);
    this.events.push({ t, type, detail });
    if (this.events.length > 300) this.events.shift();
  }

  #set(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.#log('state', reason ? `${state}: ${reason}` : state);
    this.dispatchEvent(new Event('change'));
  }

  // start fetches the session and follows Strait's events.
  async start() {
    try {
      const s = await session();
      this.app = s.app;
      this.#strait = new Strait({ base: s.strait, token: s.token });
      this.#listen();
    } catch (e) {
      this.#set('failed', e.message);
    }
  }

  #listen() {
    this.#stopEvents?.();
    this.#stopEvents = this.#strait.events((ev) => this.#event(ev), {
      onOpen: () => {
        this.listening = true;
        this.#log('events', 'open');
        if (this.state === 'starting') this.#set('waiting');
      },
      onError: (e) => {
        this.listening = false;
        this.#log('events', e.message);
        // A minted token expired (or was revoked): ask the backend again.
        if (e instanceof StraitError && e.status === 401) this.#renew();
      },
    });
  }

  async #renew() {
    try {
      this.#strait.setToken((await session()).token);
      this.#listen();
    } catch (e) {
      this.#set('failed', e.message);
    }
  }

  #event(ev) {
    if (ev.app !== this.app) return;
    this.#log('event', `${ev.call} ${ev.state}`);
    const mine = this.call && this.call.id === ev.call;
    if (ev.state === 'ringing' && !this.active) {
      this.call = { id: ev.call, caller: ev.caller || 'unknown', callee: ev.callee || '' };
      this.stats = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, audioLevel: 0 };
      this.level = 0;
      this.#offer = offerOf(ev.call);
      this.#offer.catch((e) => this.#log('offer', e.message));
      this.#set('incoming');
    } else if (ev.state === 'ringing') {
      this.#log('busy', `${ev.call} from ${ev.caller}: left ringing for another page`);
    } else if (mine && ev.state === 'answered' && this.state === 'incoming') {
      this.#end('ended', 'answered elsewhere');
    } else if (mine && ev.state === 'ended' && this.active) {
      this.#end('ended', this.state === 'incoming' ? 'caller gave up' : (ev.reason || 'caller hung up'));
    }
  }

  // answer answers the ringing call with the microphone.
  async answer() {
    const call = this.call;
    if (!call || this.state !== 'incoming') throw new Error('no incoming call');
    this.#set('connecting');
    try {
      // Made inside the click, so that autoplay lets it run.
      this.#audioCtx ??= new AudioContext();
      this.#audioCtx.resume().catch(() => {});
      const offer = await this.#offer;
      this.#log('answer', 'offer in hand');
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      this.#log('answer', 'microphone open');
      if (this.call !== call || this.state !== 'connecting') { mic.getTracks().forEach((t) => t.stop()); return; }
      this.#mic = mic;
      const pc = this.#pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      mic.getTracks().forEach((t) => pc.addTrack(t, mic));
      pc.ontrack = (e) => this.#play(e.streams[0] || new MediaStream([e.track]));
      pc.onconnectionstatechange = () => this.#connection(pc);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc, GATHER_MS);
      this.#log('answer', `ICE candidates gathered (${pc.iceGatheringState})`);
      if (this.call !== call) return;
      await this.#strait.answer(call.id, pc.localDescription.sdp);
      this.#log('answered', call.id);
      this.#every(STATS_MS, () => this.#readStats());
    } catch (e) {
      if (this.call !== call) return;
      this.#end('failed', e.message || String(e));
      this.#strait.reject(call.id, 500).catch(() => {});
    }
  }

  // decline refuses the ringing call with a SIP status (400-699).
  async decline(status = 603) {
    const call = this.call;
    if (!call || this.state !== 'incoming') throw new Error('no incoming call');
    this.#end('ended', `declined (${status})`);
    await this.#strait.reject(call.id, Number(status));
  }

  // hangup ends the call.
  async hangup() {
    const call = this.call;
    if (!call || !this.active) return;
    if (this.state === 'incoming') return this.decline();
    this.#end('ended', 'hung up');
    await this.#strait.hangup(call.id).catch((e) => this.#log('hangup', e.message));
  }

  #connection(pc) {
    if (pc !== this.#pc) return;
    this.#log('pc', pc.connectionState);
    if (pc.connectionState === 'connected' && this.state === 'connecting') this.#set('connected');
    if (pc.connectionState === 'failed' && this.active) {
      const id = this.call?.id;
      this.#end('failed', 'media connection failed');
      if (id) this.#strait.hangup(id).catch(() => {});
    }
  }

  // #play plays the caller's audio and measures its level.
  #play(stream) {
    this.#audio.srcObject = stream;
    this.#audio.play().catch(() => {});
    // Chromium feeds a remote WebRTC track to Web Audio only while it
    // also plays in a media element, hence both.
    const an = this.#audioCtx.createAnalyser();
    an.fftSize = 1024;
    this.#audioCtx.createMediaStreamSource(stream).connect(an);
    const buf = new Float32Array(an.fftSize);
    this.#every(METER_MS, () => {
      an.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      this.level = Math.max(Math.sqrt(sum / buf.length), this.level * 0.8);
      this.dispatchEvent(new Event('level'));
    });
  }

  async #readStats() {
    const pc = this.#pc;
    if (!pc) return;
    const st = { ...this.stats };
    (await pc.getStats()).forEach((s) => {
      if (s.kind !== 'audio') return;
      if (s.type === 'inbound-rtp') {
        st.packetsReceived = s.packetsReceived || 0;
        st.audioEnergy = s.totalAudioEnergy || 0;
        st.audioLevel = s.audioLevel || 0;
      } else if (s.type === 'outbound-rtp') {
        st.packetsSent = s.packetsSent || 0;
      }
    });
    if (pc === this.#pc) { this.stats = st; this.dispatchEvent(new Event('stats')); }
  }

  #every(ms, f) { this.#timers.push(setInterval(f, ms)); }

  #end(state, reason) {
    this.#timers.forEach(clearInterval);
    this.#timers = [];
    this.#pc?.close();
    this.#pc = null;
    this.#mic?.getTracks().forEach((t) => t.stop());
    this.#mic = null;
    this.#offer = null;
    this.#audio.srcObject = null;
    this.level = 0;
    this.#set(state, reason);
  }
}

// session asks the page's backend for Strait's URL and a token.
async function session() {
  const res = await fetch('session', { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`session: ${res.status} ${(await res.text()).trim()}`);
  return res.json();
}

// offerOf asks the backend for a ringing call's offer (it waits a moment
// for Strait's webhook, which may reach it after the event reached us).
async function offerOf(id) {
  const res = await fetch(`offers/${encodeURIComponent(id)}`, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`offer: ${res.status} ${(await res.text()).trim()}`);
  return (await res.json()).offer;
}

// gathered resolves when pc has all its ICE candidates, or after ms.
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

// --- the page ---

const $ = (id) => document.getElementById(id);
const page = new AppPage($('remote'));
window.app = page;

const LABELS = {
  starting: () => 'Connecting to Strait…',
  waiting: () => 'Waiting for calls',
  incoming: () => `Incoming call from ${page.call.caller}`,
  connecting: () => 'Connecting media…',
  connected: () => `In call with ${page.call.caller}`,
  ended: () => `Call ended (${page.reason})`,
  failed: () => `Failed: ${page.reason}`,
};

function render() {
  $('state').textContent = LABELS[page.state]();
  $('state').dataset.state = page.state;
  $('app-name').textContent = page.app || 'this app';
  $('incoming').hidden = page.state !== 'incoming';
  $('incall').hidden = page.state !== 'connecting' && page.state !== 'connected';
  if (page.call) {
    $('caller').textContent = page.call.caller;
    $('callee').textContent = page.call.callee;
  }
  document.title = page.state === 'incoming' ? `Incoming call · ${page.call.caller}` : 'Calls to a web app';
}

page.addEventListener('change', render);
page.addEventListener('stats', () => { $('packets').textContent = `${page.stats.packetsReceived} packets in, ${page.stats.packetsSent} out`; });
page.addEventListener('level', () => {
  const pct = Math.round(Math.min(1, page.level * 4) * 100);
  $('meter-bar').style.width = `${pct}%`;
  $('meter-bar').parentElement.setAttribute('aria-valuenow', String(pct));
});
$('answer').addEventListener('click', () => page.answer().catch(() => {}));
$('decline').addEventListener('click', () => page.decline(Number($('status').value)).catch((e) => page.events.push({ type: 'error', detail: e.message })));
$('hangup').addEventListener('click', () => page.hangup());
render();
page.start();
