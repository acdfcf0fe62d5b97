// Network: the peer table (capacity, executors, price, RTT), RTT over time from this page's own pings, and
// this node's jobs over time. Charts by uPlot (vendored).
import { useEffect, useRef } from './vendor/hooks.module.js';
import uPlot from './vendor/uPlot.esm.js';
import { html, short } from './ui.js';

const COLORS = ['#2f5d8a', '#c62828', '#1b7d3a', '#8a6d00', '#6a1b9a', '#00838f', '#ad1457', '#4e342e'];

// A uPlot chart that follows its data; `series` are the labels of the y columns.
function Chart({ id, title, series, data, yLabel, stepped }) {
  const box = useRef(null);
  const plot = useRef(null);
  const key = series.join('|');
  useEffect(() => {
    const width = Math.max(320, (box.current.clientWidth || 640) - 8);
    const opts = {
      title, width, height: 220,
      axes: [{}, { label: yLabel }],
      series: [{}, ...series.map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 2,
        ...(stepped ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
      }))],
    };
    plot.current = new uPlot(opts, data, box.current);
    return () => plot.current.destroy();
  }, [key]);
  useEffect(() => { if (plot.current) plot.current.setData(data); }, [data]);
  return html`<div id=${id} ref=${box} role="img" aria-label=${title} data-points=${data[0].length}></div>`;
}

// RTT samples {t (s), rtt: {peer_id: ms}} -> uPlot columns, one series per peer.
export function rttColumns(samples, peers) {
  return [samples.map((s) => s.t), ...peers.map((p) => samples.map((s) => s.rtt[p] ?? null))];
}

// The jobs this node asked for, cumulative over time (one step per job).
export function jobColumns(jobs) {
  const times = jobs.map((j) => Date.parse(j.created_at) / 1000).filter((t) => !Number.isNaN(t)).sort((a, b) => a - b);
  if (times.length === 0) return [[], []];
  // A last point at "now" with the same count, so the latest step has a width.
  return [[...times, Math.max(Date.now() / 1000, times[times.length - 1] + 1)], [...times.map((_, i) => i + 1), times.length]];
}

// The known peers with their capacity, executors, price and RTT (the latest sample, else the daemon's own).
export function PeerTable({ id, peers, rtt = {} }) {
  if (peers.length === 0) return html`<p class="muted">No peers known yet.</p>`;
  return html`<table id=${id}>
    <thead><tr><th>Peer</th><th>Connected</th><th>Free CPU (MHz)</th><th>Cores</th><th>Free memory (MB)</th>
      <th>GPUs</th><th>Executors</th><th>Price (wei/s/1000 MHz)</th><th>RTT (ms)</th></tr></thead>
    <tbody>${peers.map((p) => {
      const c = p.capacity;
      const ms = rtt[p.peer_id] ?? p.rtt_ms;
      return html`<tr><td title=${p.peer_id}>${short(p.peer_id)}</td><td>${p.connected ? 'yes' : 'no'}</td>
        <td>${c.cpu_mhz ?? ''}</td><td>${c.cores ?? ''}</td><td>${c.memory_mb ?? ''}</td>
        <td>${(c.gpus || []).length}</td><td>${(c.executors || []).join(', ')}</td><td>${c.ntx_price ?? ''}</td>
        <td>${ms == null ? '' : Number(ms).toFixed(1)}</td></tr>`;
    })}</tbody></table>`;
}

export function Network({ self, peers: all, samples, jobs }) {
  const selfId = self ? (self.peer_id || self.ID) : null;
  const peers = all.filter((p) => p.peer_id !== selfId);  // NuNet's dump lists this node too
  const ids = peers.map((p) => p.peer_id).slice(0, COLORS.length);
  const latest = samples.length ? samples[samples.length - 1].rtt : {};
  return html`
    <section class="wide" aria-labelledby="self-title">
      <h2 id="self-title">This node</h2>
      <dl><dt>Peer id</dt><dd id="self-id">${selfId || '…'}</dd>
        <dt>Addresses</dt><dd>${self ? (self.addrs || self.Addrs || []).join(' ') : ''}</dd></dl>
    </section>
    <section class="wide" aria-labelledby="peers-title">
      <h2 id="peers-title">Known peers</h2>
      <${PeerTable} id="peers" peers=${peers} rtt=${latest} />
    </section>
    <section aria-labelledby="rtt-title">
      <h2 id="rtt-title">Round-trip time</h2>
      <p class="muted">Sampled by this page every 3 s while it is open (GET /peers/ping/{peer}).</p>
      ${ids.length ? html`<${Chart} id="rtt-chart" title="RTT (ms)" series=${ids.map(short)} yLabel="ms"
        data=${rttColumns(samples, ids)} />` : html`<p class="muted">No peers to ping.</p>`}
    </section>
    <section aria-labelledby="jobs-chart-title">
      <h2 id="jobs-chart-title">This node's jobs</h2>
      ${jobs.length ? html`<${Chart} id="jobs-chart" title="Jobs requested (cumulative)" series=${['jobs']}
        yLabel="jobs" stepped=${true} data=${jobColumns(jobs)} />` : html`<p class="muted">No jobs yet.</p>`}
    </section>`;
}
