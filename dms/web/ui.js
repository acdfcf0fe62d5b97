// Shared pieces: the html template tag (preact + htm, vendored), labelled fields with their errors beside them.
import { h } from './vendor/preact.module.js';
import htm from './vendor/htm.module.js';

export const html = htm.bind(h);

// An input with its <label> and, when the daemon refused it, the reason right beside it.
export function Field({ id, label, value, onInput, type = 'text', error, hint, ...rest }) {
  const described = [error ? `${id}-error` : null, hint ? `${id}-hint` : null].filter(Boolean).join(' ');
  return html`<div class="field ${error ? 'invalid' : ''}">
    <label for=${id}>${label}</label>
    <input id=${id} name=${id} type=${type} value=${value} aria-invalid=${error ? 'true' : 'false'}
      aria-describedby=${described || undefined} onInput=${(e) => onInput(e.currentTarget.value)} ...${rest} />
    ${hint && html`<small id="${id}-hint" class="muted">${hint}</small>`}
    ${error && html`<span id="${id}-error" class="error" role="alert">${error}</span>`}
  </div>`;
}

export function Meter({ id, label, value, max, unit }) {
  const pct = max > 0 ? Math.round((100 * value) / max) : 0;
  return html`<div class="gauge">
    <label for=${id}>${label}</label>
    <meter id=${id} min="0" max=${max} value=${value} low=${max * 0.7} high=${max * 0.9} optimum="0">${pct} %</meter>
    <span class="muted">${value} / ${max} ${unit} (${pct} %)</span>
  </div>`;
}

export const short = (id) => (id && id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id || '');
export const when = (t) => (!t ? '' : Number.isNaN(Date.parse(t)) ? String(t) : new Date(t).toLocaleString());
export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
