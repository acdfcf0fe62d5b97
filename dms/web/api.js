// The public REST API and the /run/deploy websocket: the only things this page talks to.
// Errors come in dms's shape ({"error": {code, message, details}}) or NuNet's ({"error": "...", code, details}).

export const BASE = '/api/v1';

// pydantic's "Value error, " before a validator's own words says nothing to a person.
const plain = (m) => String(m ?? '').replace(/^Value error, /, '');

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.details = error.details;
  }
  // {field: message} from the error's details, for showing each beside its input.
  fields() {
    const out = {};
    for (const d of Array.isArray(this.details) ? this.details : []) {
      if (d && d.field) out[String(d.field).split('.').pop().toLowerCase()] = plain(d.message);
    }
    return out;
  }
  // {dotted path: message}, for fields inside lists: "inputs.0.path" -> "inputs.0.path".
  paths() {
    const out = {};
    for (const d of Array.isArray(this.details) ? this.details : []) {
      if (d && d.field) out[String(d.field).replace(/^body\./, '').toLowerCase()] = plain(d.message);
    }
    return out;
  }
}

function errorOf(status, body) {
  const e = body && body.error;
  if (typeof e === 'string') return { message: e, code: body.code, details: body.details };
  if (e && typeof e === 'object') return e;
  return { message: typeof body === 'string' && body ? body : `HTTP ${status}` };
}

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return answer(await fetch(path.startsWith('/auth') || path.startsWith('/metrics') ? path : BASE + path, init));
}

async function answer(res) {
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw new ApiError(res.status, errorOf(res.status, data));
  return data;
}

// A file (or any Blob) as the raw body: an artifact, a WASM module. Same-origin, the cookie carries the token.
export async function upload(path, blob) {
  const init = {
    method: 'POST', credentials: 'same-origin', body: blob,
    headers: { Accept: 'application/json', 'Content-Type': 'application/octet-stream' },
  };
  return answer(await fetch(BASE + path, init));
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);

// NuNet's DELETE, or dms's older POST where DELETE is not routed.
export async function offboard(force) {
  const q = `/onboarding/offboard?force=${force ? 'true' : 'false'}`;
  try { return await api('DELETE', q); } catch (e) {
    if (e.status === 405) return api('POST', q);
    throw e;
  }
}

// A list whichever way it comes: a bare array (NuNet) or under a key (dms).
export const listOf = (x, key) => (Array.isArray(x) ? x : (x && Array.isArray(x[key]) ? x[key] : []));

// The known peers with their capacity: /peers/dht/dump (NuNet's PeerData records, dms's fields beside), else
// dms's older /peers/dht. NuNet's `{"message": "No Content in DHT"}` is an empty list.
export async function knownPeers() {
  let raw;
  try { raw = await get('/peers/dht/dump'); } catch (e) {
    if (e.status !== 404) throw e;
    raw = await get('/peers/dht');
  }
  return peerRows(raw);
}

export function peerRows(raw) {
  return listOf(raw, 'peers').filter((p) => p && typeof p === 'object').map((p) => {
    const free = p.available_resources || {};  // NuNet's FreeResources
    const capacity = p.capacity || {
      cpu_mhz: free.tot_cpu_hz, memory_mb: free.ram, cores: free.vcpu, gpus: p.gpu_info || [],
      payment_addr: p.tokenomics_addrs,
    };
    return {
      peer_id: p.peer_id || p.ID || p.id || '?',
      connected: p.connected,
      rtt_ms: p.rtt_ms,
      age_s: p.age_s,
      available: p.is_available,
      capacity,
    };
  });
}

export async function deviceOnline() {
  return onlineOf(await get('/device/status'));
}

// NuNet's GET answers `online`; dms's older one `is_available`.
export const onlineOf = (s) => ('online' in s ? s.online : s.is_available);

// The running-jobs gauge comes from the Prometheus text at /metrics (public, no private endpoint).
export async function runningJobs() {
  const res = await fetch('/metrics', { credentials: 'same-origin' });
  if (!res.ok) return null;
  const m = /^dms_jobs_running(?:\{[^}]*\})?\s+([0-9.e+-]+)$/m.exec(await res.text());
  return m ? Number(m[1]) : null;
}

// The lines of a log frame: NuNet's top-level stdout or stderr (one stream per frame), or an older nested
// message carrying both.
export function logLines(frame) {
  const out = [];
  for (const src of [frame, frame.message && typeof frame.message === 'object' ? frame.message : {}]) {
    for (const stream of ['stdout', 'stderr']) {
      if (typeof src[stream] === 'string' && src[stream] !== '') out.push({ stream, text: src[stream] });
    }
    if (out.length) break;
  }
  return out;
}

export function openDeploySocket(onFrame, onState) {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${BASE}/run/deploy`;
  const ws = new WebSocket(url);
  ws.addEventListener('open', () => onState('open'));
  ws.addEventListener('close', () => onState('closed'));
  ws.addEventListener('message', (ev) => {
    try { onFrame(JSON.parse(ev.data)); } catch { /* not JSON: ignored */ }
  });
  return ws;
}

// A command line split the way a shell would for plain words and quotes: sh -c "echo a; echo b".
export function splitCommand(line) {
  const s = line.trim();
  if (s.startsWith('[')) return JSON.parse(s);
  const out = [];
  let cur = null;
  let quote = null;
  for (const ch of s) {
    if (quote) {
      if (ch === quote) quote = null; else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch; cur = cur ?? '';
    } else if (/\s/.test(ch)) {
      if (cur !== null) { out.push(cur); cur = null; }
    } else {
      cur = (cur ?? '') + ch;
    }
  }
  if (quote) throw new Error('the command has an unclosed quote');
  if (cur !== null) out.push(cur);
  return out;
}
