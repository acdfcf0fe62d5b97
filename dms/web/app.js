// The dashboard: a compute-provider view, a service-provider view and a network view, on the public REST API
// and the /run/deploy websocket only. Served by the daemon itself at / (never from a CDN).
import { render } from './vendor/preact.module.js';
import { useEffect, useRef, useState } from './vendor/hooks.module.js';
import { ApiError, api, get, knownPeers, listOf, openDeploySocket } from './api.js';
import { ComputeProvider, loadComputeProvider } from './cp.js';
import { FRAME_STATE, frameEntry } from './frames.js';
import { Network } from './net.js';
import { ServiceProvider } from './sp.js';
import { Field, html } from './ui.js';

const VIEWS = [['cp', 'Compute provider'], ['sp', 'Service provider'], ['net', 'Network']];

function Login({ onDone }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    try { await api('POST', '/auth/login', { token }); onDone(); } catch (e) { setError(e.message); }
  };
  return html`<main><section><form id="login-form" onSubmit=${submit}>
    <h2>This node needs its API token</h2>
    <p class="muted">rest.api_token from the daemon's config. The daemon keeps it in an HttpOnly cookie for this page.</p>
    <${Field} id="login-token" label="API token" type="password" value=${token} onInput=${setToken} error=${error}
      autocomplete="current-password" />
    <button type="submit">Sign in</button>
  </form></section></main>`;
}

function Dashboard({ onUnauthorized }) {
  const [view, setView] = useState((location.hash || '#cp').slice(1));
  const [cp, setCp] = useState({});
  const [jobs, setJobs] = useState([]);
  const [frames, setFrames] = useState({});
  const [selected, setSelected] = useState(null);
  const [net, setNet] = useState({ self: null, peers: [], samples: [] });
  const [conn, setConn] = useState('connecting');
  const [problem, setProblem] = useState(null);
  const ws = useRef(null);
  const seen = useRef({});  // job_id -> the seqs shown, so a replay shows nothing twice
  const following = useRef({});  // job_id -> last seq, for the jobs still running

  const send = (frame) => {
    if (ws.current && ws.current.readyState === WebSocket.OPEN) ws.current.send(JSON.stringify(frame));
    else setProblem('the live connection is down; reload the page');
  };
  const onFrame = (f) => {
    if (!f.job_id) {
      if (f.action === 'error') setProblem(typeof f.message === 'string' ? f.message : JSON.stringify(f.message));
      return;
    }
    const s = (seen.current[f.job_id] ||= new Set());
    if (f.seq !== undefined) {
      if (s.has(f.seq)) return;
      s.add(f.seq);
      following.current[f.job_id] = Math.max(following.current[f.job_id] || 0, f.seq);
    }
    if (FRAME_STATE[f.action] && f.action !== 'job-submitted') {
      delete following.current[f.job_id];
      refreshNow.current();  // the job list shows the end at once, not at the next poll
    }
    setFrames((old) => ({ ...old, [f.job_id]: [...(old[f.job_id] || []), frameEntry(f)] }));
  };
  const select = (id) => {
    setSelected(id);
    if (!seen.current[id]) {
      seen.current[id] = new Set();
      following.current[id] = 0;
      send({ action: 'subscribe', job_id: id, after_seq: 0 });
    }
  };

  const refreshNow = useRef(() => {});
  refreshNow.current = () => refresh();
  async function refresh() {
    try {
      if (view === 'cp') setCp(await loadComputeProvider());
      if (view === 'sp' || view === 'net') setJobs(listOf(await get('/run/jobs'), 'jobs'));
      if (view === 'net') {
        const [self, peers] = await Promise.all([get('/peers/self'), knownPeers()]);
        setNet((n) => ({ ...n, self, peers }));
      }
      setProblem(null);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) onUnauthorized();
      setProblem(e instanceof ApiError ? `${e.status}: ${e.message}` : String(e));
    }
  }

  useEffect(() => {  // the live connection; after a drop it comes back and re-subscribes where it left off
    let stopped = false;
    let timer = null;
    const connect = () => {
      const sock = openDeploySocket(onFrame, (state) => {
        setConn(state);
        if (state === 'open') {
          for (const [job_id, after_seq] of Object.entries(following.current)) {
            sock.send(JSON.stringify({ action: 'subscribe', job_id, after_seq }));
          }
        } else if (state === 'closed' && !stopped) {
          timer = setTimeout(connect, 2000);
        }
      });
      ws.current = sock;
    };
    connect();
    return () => { stopped = true; clearTimeout(timer); ws.current.close(); };
  }, []);
  useEffect(() => {
    const onHash = () => setView((location.hash || '#cp').slice(1));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, 2000);
    return () => clearInterval(timer);
  }, [view]);
  useEffect(() => {  // the RTT chart's samples: this page pings each known peer every 3 s while on this view
    if (view !== 'net') return undefined;
    const sample = async () => {
      const [self, known] = await Promise.all([get('/peers/self').catch(() => ({})), knownPeers().catch(() => [])]);
      const peers = known.filter((p) => p.peer_id !== (self.peer_id || self.ID));
      const rtt = {};
      await Promise.all(peers.slice(0, 8).map(async (p) => {
        try { rtt[p.peer_id] = (await get(`/peers/ping/${encodeURIComponent(p.peer_id)}`)).rtt_ms; } catch { /* unreachable */ }
      }));
      setNet((n) => ({ ...n, samples: [...n.samples, { t: Date.now() / 1000, rtt }].slice(-120) }));
    };
    sample();
    const timer = setInterval(sample, 3000);
    return () => clearInterval(timer);
  }, [view]);

  const go = (v) => { location.hash = v; setView(v); };
  let body;
  if (view === 'sp') {
    body = html`<${ServiceProvider} jobs=${jobs} frames=${frames} selected=${selected} select=${select} send=${send}
      refresh=${refresh} />`;
  } else if (view === 'net') {
    body = html`<${Network} self=${net.self} peers=${net.peers} samples=${net.samples} jobs=${jobs} />`;
  } else {
    body = html`<${ComputeProvider} data=${cp} refresh=${refresh} />`;
  }
  return html`
    <header>
      <h1>nunet-dms</h1>
      <nav role="tablist" aria-label="Views">${VIEWS.map(([v, label]) => html`<button type="button" role="tab"
        id=${`tab-${v}`} aria-selected=${view === v ? 'true' : 'false'} onClick=${() => go(v)}>${label}</button>`)}</nav>
      <span class="conn" id="conn">live: ${conn}</span>
    </header>
    ${problem && html`<p class="error" role="alert" id="problem" style="margin:1rem">${problem}</p>`}
    <main id=${`view-${view}`} role="tabpanel" aria-labelledby=${`tab-${view}`}>${body}</main>`;
}

function App() {
  const [auth, setAuth] = useState(null);
  const check = async () => setAuth(await api('GET', '/auth/status').catch(() => ({ authorized: true })));
  useEffect(() => { check(); }, []);
  if (auth === null) return html`<p class="muted">Loading…</p>`;
  if (!auth.authorized) return html`<${Login} onDone=${check} />`;
  return html`<${Dashboard} onUnauthorized=${check} />`;
}

render(html`<${App} />`, document.getElementById('root'));
