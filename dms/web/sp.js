// Service provider: the job form, the quote, paying, the live frames and log lines, the job list, cancel.
import { useState } from './vendor/hooks.module.js';
import { ApiError, post, splitCommand } from './api.js';
import { Field, TERMINAL, html, short, when } from './ui.js';
import { payWithWallet, priceWei } from './wallet.js';

// KEY=value lines into the job's env object.
export function parseEnv(text) {
  const env = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`line ${i + 1}: expected KEY=value`);
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

function JobForm({ onQuote }) {
  const [v, setV] = useState({
    image: 'dms-test/busybox:1', command: 'sh -c "echo hello from dms"', cpu_mhz: '500', cores: '0.5',
    memory_mb: '64', duration_s: '60', max_price: '1000000000000000000', env: '', target: '',
  });
  const [errors, setErrors] = useState({});
  const [message, setMessage] = useState(null);
  const set = (k) => (x) => setV({ ...v, [k]: x });
  const onSubmit = async (ev) => {
    ev.preventDefault();
    setErrors({}); setMessage(null);
    let command;
    try { command = splitCommand(v.command); } catch (e) { setErrors({ command: e.message }); return; }
    let env;
    try { env = parseEnv(v.env); } catch (e) { setErrors({ env: e.message }); return; }
    const body = {
      image: v.image.trim(), command, env,
      resources: { cpu_mhz: Number(v.cpu_mhz), cores: Number(v.cores), memory_mb: Number(v.memory_mb) },
      max_price: Number(v.max_price), duration_s: Number(v.duration_s),
      ...(v.target.trim() ? { target_peer: v.target.trim() } : {}),
    };
    try { onQuote(await post('/run/request-service', body), body); } catch (e) {
      if (e instanceof ApiError) setErrors(e.fields());
      setMessage(e.message || String(e));
    }
  };
  return html`<form id="job-form" onSubmit=${onSubmit} aria-labelledby="job-title">
    <h2 id="job-title">New job</h2>
    <${Field} id="job-image" label="Container image" value=${v.image} onInput=${set('image')} error=${errors.image} required />
    <${Field} id="job-command" label="Command" value=${v.command} onInput=${set('command')} error=${errors.command}
      hint="words and quotes as in a shell, or a JSON array" />
    <${Field} id="job-cpu" label="CPU (MHz)" type="number" value=${v.cpu_mhz} onInput=${set('cpu_mhz')} error=${errors.cpu_mhz} />
    <${Field} id="job-cores" label="Cores (limit)" type="number" step="0.1" value=${v.cores} onInput=${set('cores')}
      error=${errors.cores} />
    <${Field} id="job-memory" label="Memory (MB)" type="number" value=${v.memory_mb} onInput=${set('memory_mb')}
      error=${errors.memory_mb} />
    <${Field} id="job-duration" label="Run time (s)" type="number" value=${v.duration_s} onInput=${set('duration_s')}
      error=${errors.duration_s} />
    <${Field} id="job-price" label="Max price (wei)" type="number" value=${v.max_price} onInput=${set('max_price')}
      error=${errors.max_price} />
    <div class="field ${errors.env ? 'invalid' : ''}">
      <label for="job-env">Environment</label>
      <textarea id="job-env" rows="2" placeholder="KEY=value, one a line" value=${v.env}
        aria-describedby=${errors.env ? 'job-env-error' : undefined}
        onInput=${(e) => set('env')(e.currentTarget.value)}></textarea>
      ${errors.env && html`<span id="job-env-error" class="error" role="alert">${errors.env}</span>`}
    </div>
    <${Field} id="job-target" label="Provider (optional)" value=${v.target} onInput=${set('target')}
      error=${errors.target_peer} hint="a peer id from the Network view; empty: the best match" />
    ${message && html`<p class="error" id="job-error" role="alert">${message}</p>`}
    <button type="submit" id="quote-btn">Get a quote</button>
  </form>`;
}

function Quote({ quote, send, onPaid }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const escrow = Boolean(quote.escrow_address);
  const wallet = typeof window.ethereum !== 'undefined';
  const pay = async () => {
    setBusy(true); setError(null);
    try {
      let tx_hash;
      if (escrow) {
        if (!wallet) throw new Error('this node pays by escrow: open the page in a browser with an Ethereum wallet');
        tx_hash = await payWithWallet(window.ethereum, quote);
      }
      const message = { transaction_type: 'fund', transaction_status: 'success', ...(tx_hash ? { tx_hash } : {}) };
      send({ action: 'send-status', job_id: quote.job_id, message });
      onPaid(quote.job_id);
    } catch (e) { setError(e.message || String(e)); } finally { setBusy(false); }
  };
  return html`<div id="quote" aria-live="polite">
    <h2>Quote</h2>
    <dl>
      <dt>Job</dt><dd id="quote-job">${quote.job_id}</dd>
      <dt>Provider</dt><dd>${short(quote.compute_provider?.peer_id || quote.compute_provider_addr)}</dd>
      <dt>Price</dt><dd id="quote-price">${String(priceWei(quote))} wei</dd>
      <dt>Expires</dt><dd>${when(quote.expires_at)}</dd>
      <dt>Payment</dt><dd>${escrow ? `escrow ${short(quote.escrow_address)} on chain ${quote.chain_id}` : 'trust (payment.mode none)'}</dd>
    </dl>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <button type="button" id="pay-btn" disabled=${busy} onClick=${pay}>
      ${escrow ? 'Pay with wallet and run' : 'Run'}</button>
  </div>`;
}

export function ServiceProvider({ jobs, frames, selected, select, send, refresh }) {
  const [quote, setQuote] = useState(null);
  const current = jobs.find((j) => j.job_id === selected);
  const log = frames[selected] || [];
  const live = log.reduce((s, f) => f.state || s, null);
  const state = current ? (TERMINAL.has(current.state) ? current.state : live || current.state) : live;
  const cancel = async (id) => { await post(`/run/jobs/${id}/cancel`); await refresh(); };
  return html`
    <section><${JobForm} onQuote=${(q) => setQuote(q)} /></section>
    <section>${quote
      ? html`<${Quote} quote=${quote} send=${send} onPaid=${(id) => { setQuote(null); select(id); refresh(); }} />`
      : html`<p class="muted">Ask for a quote: the node picks a provider and prices the job.</p>`}</section>
    <section class="wide" aria-labelledby="live-title">
      <h2 id="live-title">Job ${selected ? short(selected) : ''}: <span id="job-state" class="state ${state}">${state || 'none selected'}</span></h2>
      <pre class="log" id="job-log" aria-label="job output" tabindex="0">${log.flatMap((f) => (f.lines
        ? f.lines.map((l) => html`<span class=${l.stream}>${l.text.endsWith('\n') ? l.text : `${l.text}\n`}</span>`)
        : [html`<span class="muted">${`[${f.action}${f.note ? `: ${f.note}` : ''}]\n`}</span>`]))}</pre>
    </section>
    <section class="wide" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      ${jobs.length === 0 ? html`<p class="muted">No jobs yet.</p>` : html`<table id="jobs">
        <thead><tr><th>Job</th><th>Image</th><th>State</th><th>Price (wei)</th><th>Created</th><th></th></tr></thead>
        <tbody>${jobs.map((j) => html`<tr data-job-id=${j.job_id}>
          <td><button type="button" class="secondary" onClick=${() => select(j.job_id)}
            aria-label=${`show job ${j.job_id}`}>${short(j.job_id)}</button></td>
          <td>${j.image}</td><td class="state ${j.state}">${j.state}${j.reason ? ` (${j.reason})` : ''}</td>
          <td>${j.estimated_price}</td><td>${when(j.created_at)}</td>
          <td>${!TERMINAL.has(j.state) && html`<button type="button" class="danger cancel"
            aria-label=${`cancel job ${j.job_id}`} onClick=${() => cancel(j.job_id)}>Cancel</button>`}</td>
        </tr>`)}</tbody></table>`}
    </section>`;
}
