// The Strait web phone's page: it renders the phone's model (phone.js)
// and wires its controls. See phone.js for window.phone, the model that
// tests drive.

import { Phone } from './phone.js';

const $ = (id) => document.getElementById(id);
const phone = new Phone($('remote'));
window.phone = phone;

const LABELS = {
  idle: () => 'Ready',
  starting: () => 'Starting microphone…',
  calling: () => `Calling ${phone.to}…`,
  ringing: () => `Ringing ${phone.to}…`,
  incoming: () => `Incoming call from ${phone.to}`,
  connecting: () => 'Connecting media…',
  connected: () => `In call with ${phone.to}`,
  ended: () => `Call ended${phone.reason ? ` (${phone.reason})` : ''}`,
  failed: () => `Call failed: ${phone.reason}`,
};

const REG_LABELS = {
  off: () => 'Sign in to receive calls.',
  connecting: () => `Connecting as ${phone.sipUser}…`,
  registered: () => `Receiving calls as ${phone.sipUser}`,
  unregistered: () => `Not registered${phone.registrationCause ? ` (${phone.registrationCause})` : ''}`,
  failed: () => `Sign-in failed: ${phone.registrationCause}`,
};

function render() {
  const s = $('state');
  s.textContent = LABELS[phone.state]();
  s.dataset.state = phone.state;
  const incoming = phone.state === 'incoming';
  $('incoming').hidden = !incoming;
  if (incoming) $('incoming-from').textContent = phone.to;
  document.title = incoming ? `Incoming call · ${phone.to}` : 'Strait web phone';
  $('reg-state').textContent = REG_LABELS[phone.registration]();
  $('reg-state').dataset.state = phone.registration;
  $('register').hidden = phone.registration !== 'off' && phone.registration !== 'failed' && phone.registration !== 'unregistered';
  $('signout').hidden = phone.registration === 'off';
  $('call').disabled = phone.active;
  $('to').disabled = phone.active;
  $('hangup').disabled = !phone.active;
  $('mute').disabled = !phone.active;
  $('mute').setAttribute('aria-pressed', String(phone.muted));
  $('mute').textContent = phone.muted ? 'Unmute' : 'Mute';
  if (!phone.active) renderLevel();
}

function renderLevel() {
  const pct = Math.round(phone.level * 100);
  $('meter-bar').style.width = `${pct}%`;
  $('meter').setAttribute('aria-valuenow', String(pct));
}

function renderStats() {
  const st = phone.stats;
  $('packets').textContent = st.packetsReceived ? `${st.packetsReceived} packets in` : '';
  const q = [];
  if (st.rttMs !== undefined) q.push(`RTT ${st.rttMs} ms`);
  if (st.lossPct !== undefined) q.push(`loss ${st.lossPct.toFixed(1)}%`);
  if (st.jitterMs !== undefined) q.push(`jitter ${st.jitterMs} ms`);
  $('quality').textContent = q.join(' · ');
}

// renderLog shows the user's recent calls (hidden when the API keeps no
// history for this credential).
async function renderLog() {
  const calls = await phone.recentCalls();
  $('log').hidden = !calls;
  if (!calls) return;
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
  $('calls').replaceChildren(...calls.map((c) => {
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = `${c.caller} → ${c.callee}`;
    const when = document.createElement('span');
    when.className = 'when';
    const secs = Math.round(c.duration_s || 0);
    when.textContent = `${fmt.format(new Date(c.end))} · ${c.answer ? `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, '0')}` : c.reason}`;
    li.title = `${c.direction}, SIP ${c.cause}`;
    li.dataset.call = c.id;
    li.append(who, ' ', when);
    return li;
  }));
  if (!calls.length) $('calls').replaceChildren(Object.assign(document.createElement('li'), { textContent: 'No calls yet' }));
}

// renderMics fills the microphone chooser, keeping the choice.
async function renderMics() {
  const sel = $('mic');
  let mics = [];
  try { mics = await phone.microphones(); } catch { return; }
  sel.replaceChildren(new Option('Default microphone', ''),
    ...mics.filter((m) => m.deviceId && m.deviceId !== 'default').map((m) => new Option(m.label, m.deviceId)));
  sel.value = mics.some((m) => m.deviceId === phone.micId) ? phone.micId : '';
}

function tick() {
  if (phone.state !== 'connected' || !phone.connectedAt) return;
  const s = Math.floor((performance.now() - phone.connectedAt) / 1000);
  $('timer').textContent = `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

phone.addEventListener('change', render);
// The call log: at start, once a token is set, and after each call (again
// a moment later: the record reaches the history just after the hang up).
let wasActive = false;
phone.addEventListener('change', () => {
  if (wasActive && !phone.active) { renderLog(); setTimeout(renderLog, 1500); }
  wasActive = phone.active;
});
phone.addEventListener('level', renderLevel);
phone.addEventListener('stats', renderStats);
phone.addEventListener('devices', renderMics);
navigator.mediaDevices?.addEventListener?.('devicechange', renderMics);
$('mic').addEventListener('change', () => { phone.micId = $('mic').value; });
setInterval(tick, 250);

$('dial').addEventListener('submit', (e) => {
  e.preventDefault();
  $('timer').textContent = '00:00';
  phone.dial($('to').value).catch((err) => { $('state').textContent = err.message; });
});
$('hangup').addEventListener('click', () => phone.hangup());
$('answer').addEventListener('click', () => phone.answer());
$('decline').addEventListener('click', () => phone.decline());
$('register').addEventListener('submit', (e) => {
  e.preventDefault();
  try {
    phone.register($('sip-user').value, $('sip-password').value);
  } catch (err) {
    $('reg-state').textContent = err.message;
    return;
  }
  $('sip-password').value = '';
});
$('signout').addEventListener('click', () => phone.unregister());
// The token prompt: shown when the API refused the page (401).
phone.addEventListener('token', () => {
  $('auth').hidden = false;
  $('token').focus();
});
$('auth').addEventListener('submit', (e) => {
  e.preventDefault();
  phone.setToken($('token').value.trim());
  $('token').value = '';
  $('auth').hidden = true;
  $('to').focus();
  renderLog();
});
$('mute').addEventListener('click', () => phone.setMuted(!phone.muted));
$('keypad').addEventListener('click', (e) => {
  const d = e.target.closest('button')?.dataset.digit;
  if (!d) return;
  if (phone.state === 'connected') phone.dtmf(d).catch(() => {});
  else if (!phone.active) { $('to').value += d; $('to').focus(); }
});
document.addEventListener('keydown', (e) => {
  if (phone.state !== 'connected' || e.target === $('to') || e.ctrlKey || e.metaKey || e.altKey) return;
  if (/^[0-9*#]$/.test(e.key)) phone.dtmf(e.key).catch(() => {});
});

const q = new URLSearchParams(location.search);
if (q.get('to')) $('to').value = q.get('to');
if (q.get('user')) $('sip-user').value = q.get('user');
render();
renderMics();
renderLog();
