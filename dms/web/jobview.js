// One job: its state, live log lines, outputs download, checkpoints and "resume from checkpoint N".
import { useEffect, useState } from './vendor/hooks.module.js';
import { BASE, get, listOf, post } from './api.js';
import { TERMINAL, html, short } from './ui.js';

// The outputs tar: a same-origin link, so the HttpOnly cookie carries the API token where one is set (the
// page's scripts never see the token, and the link needs no header).
function Outputs({ job }) {
  if (!job.outputs) return null;
  const href = `${BASE}/run/jobs/${encodeURIComponent(job.job_id)}/outputs`;
  return html`<p class="row">
    <a id="outputs-link" class="button" href=${href} download=${`${job.job_id}.tar`}>Download outputs</a>
    <span class="muted">a tar of /outputs, ${job.outputs.size} bytes, sha256 ${short(job.outputs.sha256)}</span>
  </p>`;
}

// The checkpoints the SP holds for this job (GET /run/jobs/{id}/checkpoints), polled while it is shown.
function Checkpoints({ job, ended, onQuote }) {
  const [cps, setCps] = useState([]);
  const [error, setError] = useState(null);
  const id = job.job_id;
  useEffect(() => {
    let live = true;
    const load = async () => {
      const got = listOf(await get(`/run/jobs/${encodeURIComponent(id)}/checkpoints`).catch(() => []), 'checkpoints');
      if (live) setCps(got);
    };
    setCps([]); setError(null);
    load();
    const timer = setInterval(load, 2000);
    return () => { live = false; clearInterval(timer); };
  }, [id]);
  if (cps.length === 0) return null;
  const resume = async (seq) => {
    setError(null);
    try { onQuote(await post(`/run/jobs/${encodeURIComponent(id)}/resume`, { checkpoint: seq })); } catch (e) {
      setError(e.message || String(e));
    }
  };
  return html`<div aria-labelledby="cps-title">
    <h3 id="cps-title">Checkpoints</h3>
    ${error && html`<p class="error" id="resume-error" role="alert">${error}</p>`}
    <table id="checkpoints">
      <thead><tr><th>#</th><th>Taken</th><th>Size (bytes)</th><th>sha256</th><th></th></tr></thead>
      <tbody>${cps.map((c) => html`<tr data-seq=${c.seq}>
        <td>${c.seq}${c.final ? ' (final)' : ''}</td><td>${new Date(c.at * 1000).toLocaleString()}</td><td>${c.size}</td>
        <td><a href=${`${BASE}/artifacts/${c.sha256}`} download=${`${id}-checkpoint-${c.seq}.tar`}
          aria-label=${`download checkpoint ${c.seq}`}>${short(c.sha256)}</a></td>
        <td>${ended && html`<button type="button" class="secondary" id=${`resume-${c.seq}`}
          onClick=${() => resume(c.seq)}>Resume from checkpoint ${c.seq}</button>`}</td>
      </tr>`)}</tbody>
    </table>
    ${!ended && html`<p class="muted">A resume from a checkpoint is offered once the job has ended.</p>`}
  </div>`;
}

export function JobView({ id, job, log, state, onQuote }) {
  return html`<section class="wide" aria-labelledby="live-title">
    <h2 id="live-title">Job ${id ? short(id) : ''}: <span id="job-state" class="state ${state}">${state || 'none selected'}</span></h2>
    <pre class="log" id="job-log" aria-label="job output" tabindex="0">${log.flatMap((f) => (f.lines
      ? f.lines.map((l) => html`<span class=${l.stream}>${l.text.endsWith('\n') ? l.text : `${l.text}\n`}</span>`)
      : [html`<span class="muted">${`[${f.action}${f.note ? `: ${f.note}` : ''}]\n`}</span>`]))}</pre>
    ${job && html`<${Outputs} job=${job} />`}
    ${job && html`<${Checkpoints} job=${job} ended=${TERMINAL.has(state)} onQuote=${onQuote} />`}
  </section>`;
}
