// Registration for Strait's web phone: the page registers over SIP over
// WebSocket (RFC 7118) at Strait's /ws with JsSIP (bundled beside this file
// as jssip.min.js, loaded by index.html before the module) so that calls to
// its user ring here; outgoing calls still go through the HTTP API.
//
//   const reg = startRegistration({ user, password, onState, onIncoming });
//   reg.stop();
//
// user is "alice" (the domain is this page's host) or "alice@example.com".
// onState(state, cause) gets 'connecting' | 'registered' | 'unregistered' |
// 'failed'; onIncoming(call) gets each incoming call, an object with
// from, fromName, answer(stream, onPeer), decline(), hangup(), sendDTMF(digits)
// and on(event, f) for 'accepted', 'ended' (cause).

// wsURL is Strait's SIP WebSocket, beside the page (ws: or wss: as the page).
function wsURL() {
  const u = new URL('ws', document.baseURI);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

const PC_CONFIG = { iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };

export function startRegistration({ user, password, onState, onIncoming }) {
  if (!globalThis.JsSIP) throw new Error('JsSIP did not load');
  user = String(user || '').trim();
  if (!/^[^@\s:;<>"]+(@[^@\s:;<>"]+)?$/.test(user)) throw new Error('a user name, or user@domain');
  const uri = `sip:${user.includes('@') ? user : `${user}@${location.hostname}`}`;
  const socket = new JsSIP.WebSocketInterface(wsURL());
  const ua = new JsSIP.UA({
    sockets: [socket], uri, password: password || 'none', register: true,
    register_expires: 300, session_timers: false, user_agent: 'Strait web phone (JsSIP)',
  });
  let stopped = false;
  onState('connecting', '');
  ua.on('registered', () => onState('registered', ''));
  ua.on('unregistered', (e) => { if (!stopped) onState('unregistered', e?.cause || ''); });
  ua.on('registrationFailed', (e) => onState('failed', e.cause || 'registration failed'));
  ua.on('disconnected', () => { if (!stopped) onState('connecting', 'connection lost'); });
  ua.on('newRTCSession', (e) => {
    if (e.originator !== 'remote') return;
    onIncoming(incomingCall(e.session, e.request));
  });
  ua.start();
  return {
    uri,
    stop() {
      stopped = true;
      ua.stop();
      onState('unregistered', '');
    },
  };
}

// incomingCall wraps a JsSIP session in what the phone needs.
function incomingCall(s, req) {
  const listeners = { accepted: [], ended: [] };
  const emit = (name, arg) => listeners[name].forEach((f) => f(arg));
  let over = false;
  const end = (cause) => { if (!over) { over = true; emit('ended', cause); } };
  s.on('accepted', () => emit('accepted'));
  s.on('ended', (e) => end(e.cause || 'ended'));
  s.on('failed', (e) => end(e.cause || 'failed'));
  const from = s.remote_identity?.uri?.user || req?.from?.uri?.user || 'unknown';
  return {
    from,
    fromName: s.remote_identity?.display_name || '',
    get connection() { return s.connection; },
    on(name, f) { listeners[name].push(f); },
    // answer answers with the microphone's stream; onPeer gets the
    // RTCPeerConnection once JsSIP made it (for the remote track and stats).
    answer(stream, onPeer) {
      s.on('peerconnection', (e) => onPeer(e.peerconnection));
      s.answer({ mediaStream: stream, pcConfig: PC_CONFIG });
      if (s.connection) onPeer(s.connection);
    },
    decline() { if (!over) s.terminate({ status_code: 603, reason_phrase: 'Decline' }); },
    hangup() { if (!over) s.terminate(); },
    sendDTMF(digits) { s.sendDTMF(digits, { transportType: 'RFC2833' }); },
  };
}
