// Compute provider: the machine, onboarding, the reservation, availability, gauges, running jobs, payments.
import { useState } from './vendor/hooks.module.js';
import { ApiError, api, deviceOnline, get, knownPeers, listOf, offboard, post, runningJobs } from './api.js';
import { PeerTable } from './net.js';
import { Field, Meter, html, short, when } from './ui.js';

const CHANNELS = ['nunet-test', 'nunet-staging', 'nunet-team', 'nunet-edge'];

// Which field an error is about: the daemon's `details` when it names one, else NuNet's message (which names
// the field in words only: "CPU should be between ...", "invalid cardano wallet address").
const WORDS = [[/\bcpu\b/i, 'cpu'], [/memory/i, 'memory'], [/wallet|address/i, 'payment_addr'],
  [/channel/i, 'channel'], [/price/i, 'ntx_price']];
export function fieldErrors(e) {
  const fields = e.fields();
  if (Object.keys(fields).length) return fields;
  const hits = WORDS.filter(([re]) => re.test(e.message || ''));
  return hits.length === 1 ? { [hits[0][1]]: e.message } : {};
}

function useForm(initial) {
  const [values, setValues] = useState(initial);
  const [errors, setErrors] = useState({});
  const [message, setMessage] = useState(null);
  const set = (k) => (v) => setValues({ ...values, [k]: v });
  async function submit(action) {
    setErrors({}); setMessage(null);
    try { await action(); } catch (e) {
      if (!(e instanceof ApiError)) { setMessage(String(e.message || e)); return; }
      setErrors(fieldErrors(e));
      setMessage(e.message);
    }
  }
  return { values, set, errors, message, setMessage, submit };
}

function OnboardForm({ machine, refresh }) {
  const f = useForm({
    memory: String(Math.floor(machine.memory / 2)), cpu: String(Math.floor(machine.cpu / 2)),
    channel: 'nunet-test', payment_addr: '', ntx_price: '1000', is_available: true,
  });
  const [key, setKey] = useState(null);
  const v = f.values;
  const onSubmit = (ev) => {
    ev.preventDefault();
    f.submit(async () => {
      await post('/onboarding/onboard', {
        memory: Number(v.memory), cpu: Number(v.cpu), channel: v.channel, payment_addr: v.payment_addr.trim(),
        ntx_price: Number(v.ntx_price), is_available: v.is_available,
      });
      await refresh();
    });
  };
  const newWallet = () => f.submit(async () => {
    const k = await get('/onboarding/address/new?blockchain=ethereum');
    setKey(k);
    f.set('payment_addr')(k.address);
  });
  return html`<form id="onboard-form" onSubmit=${onSubmit} aria-labelledby="onboard-title">
    <h2 id="onboard-title">Onboard this machine</h2>
    <${Field} id="ob-cpu" label="CPU to reserve (MHz)" type="number" value=${v.cpu} onInput=${f.set('cpu')}
      error=${f.errors.cpu} hint=${`of ${machine.cpu} MHz`} />
    <${Field} id="ob-memory" label="Memory to reserve (MB)" type="number" value=${v.memory}
      onInput=${f.set('memory')} error=${f.errors.memory} hint=${`of ${machine.memory} MB`} />
    <div class="field ${f.errors.channel ? 'invalid' : ''}">
      <label for="ob-channel">Channel</label>
      <select id="ob-channel" value=${v.channel} onChange=${(e) => f.set('channel')(e.currentTarget.value)}
        aria-describedby=${f.errors.channel ? 'ob-channel-error' : undefined}>
        ${CHANNELS.map((c) => html`<option value=${c}>${c}</option>`)}
      </select>
      ${f.errors.channel && html`<span id="ob-channel-error" class="error" role="alert">${f.errors.channel}</span>`}
    </div>
    <${Field} id="ob-payment" label="Payout address" value=${v.payment_addr} onInput=${f.set('payment_addr')}
      error=${f.errors.payment_addr} placeholder="0x…" />
    <${Field} id="ob-price" label="Price (wei / s / 1000 MHz)" type="number" value=${v.ntx_price}
      onInput=${f.set('ntx_price')} error=${f.errors.ntx_price} />
    <div class="field">
      <label for="ob-available">Accept jobs now</label>
      <input id="ob-available" type="checkbox" checked=${v.is_available}
        onChange=${(e) => f.set('is_available')(e.currentTarget.checked)} />
    </div>
    ${f.message && html`<p class="error" id="onboard-error" role="alert">${f.message}</p>`}
    <div class="row">
      <button type="submit" id="onboard-btn">Onboard</button>
      <button type="button" class="secondary" onClick=${newWallet}>New Ethereum wallet</button>
    </div>
    ${key && html`<p class="muted">New key, shown once; keep it: <code>${key.private_key}</code></p>`}
  </form>`;
}

function ReservationForm({ status, refresh }) {
  const f = useForm({ cpu: String(status.reserved.cpu), memory: String(status.reserved.memory), force: false });
  const v = f.values;
  const onSubmit = (ev) => {
    ev.preventDefault();
    f.submit(async () => {
      await post('/onboarding/resource-config', { cpu: Number(v.cpu), memory: Number(v.memory) });
      f.setMessage(null);
      await refresh();
    });
  };
  const leave = () => f.submit(async () => { await offboard(v.force); await refresh(); });
  return html`<form id="resource-form" onSubmit=${onSubmit} aria-labelledby="res-title">
    <h2 id="res-title">Reservation</h2>
    <${Field} id="rc-cpu" label="CPU (MHz)" type="number" value=${v.cpu} onInput=${f.set('cpu')} error=${f.errors.cpu} />
    <${Field} id="rc-memory" label="Memory (MB)" type="number" value=${v.memory} onInput=${f.set('memory')}
      error=${f.errors.memory} />
    ${f.message && html`<p class="error" role="alert">${f.message}</p>`}
    <div class="row">
      <button type="submit" id="resource-btn">Change reservation</button>
      <label><input type="checkbox" id="offboard-force" checked=${v.force}
        onChange=${(e) => f.set('force')(e.currentTarget.checked)} /> even with running jobs</label>
      <button type="button" class="danger" id="offboard-btn" onClick=${leave}>Offboard</button>
    </div>
  </form>`;
}

export function ComputeProvider({ data, refresh }) {
  const { machine, status, online, running, transactions, peers = [] } = data;
  if (!machine || !status) return html`<section><p class="muted">Loading…</p></section>`;
  const toggle = async () => { await post('/device/status', { is_available: !online }); await refresh(); };
  const r = status.reserved;
  const free = status.free || r;
  return html`
    <section aria-labelledby="machine-title">
      <h2 id="machine-title">This machine</h2>
      <dl>
        <dt>CPU</dt><dd>${machine.cpu} MHz, ${machine.total_cores} cores</dd>
        <dt>Memory</dt><dd>${machine.memory} MB</dd>
        <dt>Disk</dt><dd>${machine.disk ? `${machine.disk} MB` : '?'}</dd>
        <dt>GPUs</dt><dd>${(machine.gpus || []).length ? machine.gpus.map((g) => `${g.vendor} ${g.model} (${g.vram_mb} MB)`).join(', ') : 'none'}</dd>
        <dt>Status</dt><dd id="cp-status">${status.onboarded ? `Onboarded on ${status.channel}` : 'Not onboarded'}</dd>
        ${status.onboarded && html`<dt>Availability</dt><dd class="row">
          <span id="cp-online">${online ? 'Online' : 'Offline'}</span>
          <button type="button" class="secondary" id="online-btn" onClick=${toggle}>
            ${online ? 'Go offline' : 'Go online'}</button></dd>`}
        <dt>Running jobs</dt><dd id="cp-running">${running ?? '?'}</dd>
      </dl>
    </section>
    ${status.onboarded && r && html`<section aria-labelledby="gauges-title">
      <h2 id="gauges-title">Capacity</h2>
      <${Meter} id="g-cpu-res" label="CPU reserved" value=${r.cpu} max=${machine.cpu} unit="MHz" />
      <${Meter} id="g-mem-res" label="Memory reserved" value=${r.memory} max=${machine.memory} unit="MB" />
      <${Meter} id="g-cpu-use" label="CPU in use" value=${r.cpu - free.cpu} max=${r.cpu} unit="MHz" />
      <${Meter} id="g-mem-use" label="Memory in use" value=${r.memory - free.memory} max=${r.memory} unit="MB" />
      <p class="muted">Payout ${short(status.payment_addr)}, price ${status.ntx_price} wei/s per 1000 MHz</p>
    </section>`}
    <section>${status.onboarded
      ? html`<${ReservationForm} status=${status} refresh=${refresh} />`
      : html`<${OnboardForm} machine=${machine} refresh=${refresh} />`}</section>
    <section class="wide" aria-labelledby="cp-peers-title">
      <h2 id="cp-peers-title">Peers</h2>
      <${PeerTable} id="cp-peers" peers=${peers} />
    </section>
    <section class="wide" aria-labelledby="tx-title">
      <h2 id="tx-title">Earnings and settlements</h2>
      ${transactions.length === 0 ? html`<p class="muted">No payments yet.</p>` : html`<table id="transactions">
        <thead><tr><th>When</th><th>Job</th><th>Kind</th><th>Amount (wei)</th><th>State</th><th>Tx</th></tr></thead>
        <tbody>${transactions.map((t) => html`<tr>
          <td>${when(t.at || t.date_time)}</td><td>${short(t.job_id)}</td><td>${t.kind || t.transaction_type}</td>
          <td>${t.amount ?? ''}</td><td>${t.state || ''}${t.error ? ` (${t.error})` : ''}</td>
          <td>${short(t.tx_hash)}</td></tr>`)}</tbody>
      </table>`}
    </section>`;
}

export async function loadComputeProvider() {
  const [machine, status] = await Promise.all([get('/onboarding/provisioned'), get('/onboarding/status')]);
  let online = null;
  if (status.onboarded) {
    try { online = await deviceOnline(); } catch { online = status.is_available; }
  }
  const [running, tx, self, known] = await Promise.all([
    runningJobs().catch(() => null),
    api('GET', '/transactions?size_done=0').catch(() => []),  // NuNet's route needs size_done (0: all)
    get('/peers/self').catch(() => ({})),
    knownPeers().catch(() => []),
  ]);
  const peers = known.filter((p) => p.peer_id !== (self.peer_id || self.ID));  // NuNet's dump lists this node too
  return { machine, status, online, running, transactions: listOf(tx, 'transactions'), peers };
}
