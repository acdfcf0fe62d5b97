// Service provider: the job form, the quote, paying, the selected job (live frames, log lines, outputs,
// checkpoints), the job list, cancel.
import { useState } from './vendor/hooks.module.js';
import { post } from './api.js';
import { JobForm } from './jobform.js';
import { JobView } from './jobview.js';
import { TERMINAL, html, short, when } from './ui.js';
import { payWithWallet, priceWei } from './wallet.js';

export { parseEnv } from './jobspec.js';

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
  const from = quote.resumed_from;
  return html`<div id="quote" aria-live="polite">
    <h2>Quote</h2>
    <dl>
      <dt>Job</dt><dd id="quote-job">${quote.job_id}</dd>
      ${from && html`<dt>Resumes</dt><dd id="quote-resumes">job ${short(from.job_id)} from checkpoint ${from.checkpoint}</dd>`}
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

const runs = (j) => (j.executor === 'wasm' ? `wasm ${short(j.module)}` : j.image);

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
    <${JobView} id=${selected} job=${current} log=${log} state=${state} onQuote=${(q) => setQuote(q)} />
    <section class="wide" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      ${jobs.length === 0 ? html`<p class="muted">No jobs yet.</p>` : html`<table id="jobs">
        <thead><tr><th>Job</th><th>Runs</th><th>State</th><th>Price (wei)</th><th>Created</th><th></th></tr></thead>
        <tbody>${jobs.map((j) => html`<tr data-job-id=${j.job_id}>
          <td><button type="button" class="secondary" onClick=${() => select(j.job_id)}
            aria-label=${`show job ${j.job_id}`}>${short(j.job_id)}</button></td>
          <td>${runs(j)}</td><td class="state ${j.state}">${j.state}${j.reason ? ` (${j.reason})` : ''}</td>
          <td>${j.estimated_price}</td><td>${when(j.created_at)}</td>
          <td>${!TERMINAL.has(j.state) && html`<button type="button" class="danger cancel"
            aria-label=${`cancel job ${j.job_id}`} onClick=${() => cancel(j.job_id)}>Cancel</button>`}</td>
        </tr>`)}</tbody></table>`}
    </section>`;
}
