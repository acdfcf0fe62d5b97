// The service provider's job form: a container image or a WASM module, command or args, resources, price,
// environment, inputs (uploaded files or URLs, each with its path under /inputs), checkpoints and resume.
import { useEffect, useRef, useState } from './vendor/hooks.module.js';
import { ApiError, get, listOf, post, upload } from './api.js';
import { FormError, inputPath, jobBody, jobErrors, moduleName } from './jobspec.js';
import { Field, html, short } from './ui.js';

const INITIAL = {
  executor: 'docker', image: 'dms-test/busybox:1', command: 'sh -c "echo hello from dms"', module: '', args: '',
  cpu_mhz: '500', cores: '0.5', memory_mb: '64', duration_s: '60', max_price: '1000000000000000000', env: '',
  target: '', checkpoint: false, cp_path: '/workspace', cp_interval: '5', resume: false,
};

const size = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function Check({ id, label, checked, onChange }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input id=${id} type="checkbox" checked=${checked} onChange=${(e) => onChange(e.currentTarget.checked)} />
  </div>`;
}

// Pick a module from this node's registry (GET /modules), or upload a .wasm file into it (POST /modules).
function ModulePicker({ value, onChange, error }) {
  const [modules, setModules] = useState([]);
  const [status, setStatus] = useState(null);
  const [uploadError, setModuleError] = useState(null);
  const load = async () => setModules(listOf(await get('/modules').catch(() => []), 'modules'));
  useEffect(() => { load(); }, []);
  const onFile = async (ev) => {
    const file = ev.currentTarget.files[0];
    ev.currentTarget.value = '';
    if (!file) return;
    setStatus(`uploading ${file.name}…`);
    setModuleError(null);
    try {
      let name = moduleName(file.name);
      let added;
      try { added = await upload(`/modules?name=${encodeURIComponent(name)}`, file); } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 409) throw e;
        name = `${name}-${Date.now().toString(36)}`;  // the name is taken: keep both entries
        added = await upload(`/modules?name=${encodeURIComponent(name)}`, file);
      }
      await load();
      onChange(added.sha256);
      setStatus(`added ${added.name} (${size(added.size)})`);
    } catch (e) { setStatus(null); onChange(''); setModuleError(e.message || String(e)); }
  };
  const shown = error || uploadError;
  return html`
    <div class="field ${shown ? 'invalid' : ''}">
      <label for="job-module">WASM module</label>
      <select id="job-module" value=${value} onChange=${(e) => { setModuleError(null); onChange(e.currentTarget.value); }}
        aria-invalid=${shown ? 'true' : 'false'} aria-describedby=${shown ? 'job-module-error' : undefined}>
        <option value="">(choose one)</option>
        ${modules.map((m) => html`<option value=${m.sha256}>${m.name} (${short(m.sha256)}, ${size(m.size)})</option>`)}
      </select>
      ${shown && html`<span id="job-module-error" class="error" role="alert">${shown}</span>`}
    </div>
    <div class="field">
      <label for="job-module-file">…or upload a module</label>
      <input id="job-module-file" type="file" accept=".wasm,.wat,application/wasm" onChange=${onFile}
        aria-describedby="job-module-status" />
      <small id="job-module-status" class="muted" aria-live="polite">${status || '.wasm or .wat, added to this node\'s registry'}</small>
    </div>`;
}

let nextKey = 1;

// The job's inputs: each an uploaded file (POST /artifacts answers its sha256) or an http(s) URL, with a path.
function Inputs({ rows, setRows, errors }) {
  const change = (key, patch) => setRows((rs) => rs.map((r) => (r.key === key ? { ...r, ...patch } : r)));
  const onFiles = (ev) => {
    const files = [...ev.currentTarget.files];
    ev.currentTarget.value = '';
    for (const file of files) {
      const key = nextKey++;
      setRows((rs) => [...rs, { key, kind: 'file', name: file.name, size: file.size, source: '', path: inputPath(file.name), status: 'uploading…' }]);
      upload('/artifacts', file).then(
        (a) => change(key, { source: a.sha256, status: null }),
        (e) => change(key, { status: null, error: e.message || String(e) }),
      );
    }
  };
  const addUrl = () => setRows((rs) => [...rs, { key: nextKey++, kind: 'url', source: '', path: `input-${rs.length + 1}` }]);
  return html`<fieldset id="job-inputs">
    <legend>Inputs (read-only under /inputs)</legend>
    ${errors.inputs && html`<p class="error" role="alert">${errors.inputs}</p>`}
    ${rows.map((r, i) => html`<div class="input-row" key=${r.key} data-input=${i}>
      ${r.kind === 'url'
        ? html`<${Field} id=${`in-${i}-url`} label=${`Input ${i + 1}: URL`} value=${r.source} placeholder="https://…"
            onInput=${(x) => change(r.key, { source: x })} error=${errors[`inputs.${i}.source`]} />`
        : html`<p class="muted" id=${`in-${i}-file`}>Input ${i + 1}: ${r.name} (${size(r.size)})
            ${r.status || (r.source ? ` sha256 ${short(r.source)}` : '')}
            ${(r.error || errors[`inputs.${i}.source`]) && html`<span class="error" role="alert"> ${r.error || errors[`inputs.${i}.source`]}</span>`}</p>`}
      <${Field} id=${`in-${i}-path`} label=${`Input ${i + 1}: path under /inputs`} value=${r.path}
        onInput=${(x) => change(r.key, { path: x })} error=${errors[`inputs.${i}.path`]} />
      <button type="button" class="secondary" aria-label=${`remove input ${i + 1}`}
        onClick=${() => setRows((rs) => rs.filter((x) => x.key !== r.key))}>Remove</button>
    </div>`)}
    <div class="field">
      <label for="job-input-file">Upload input files</label>
      <input id="job-input-file" type="file" multiple onChange=${onFiles} />
    </div>
    <button type="button" class="secondary" id="job-input-url" onClick=${addUrl}>Add an input from a URL</button>
  </fieldset>`;
}

function Checkpoints({ v, set, errors }) {
  return html`<fieldset id="job-checkpoints">
    <legend>Checkpoints</legend>
    <${Check} id="job-checkpoint" label="Snapshot /workspace" checked=${v.checkpoint} onChange=${set('checkpoint')} />
    ${v.checkpoint && html`
      <${Field} id="job-cp-interval" label="Every (s)" type="number" min="1" value=${v.cp_interval}
        onInput=${set('cp_interval')} error=${errors['checkpoint.interval_s']} />
      <${Field} id="job-cp-path" label="Folder" value=${v.cp_path} onInput=${set('cp_path')}
        error=${errors['checkpoint.path']} hint="the job's own disk; its files are restored on a resume" />`}
    <${Check} id="job-resume" label="Resume elsewhere if the provider is lost" checked=${v.resume}
      onChange=${set('resume')} />
  </fieldset>`;
}

export function JobForm({ onQuote }) {
  const [v, setV] = useState(INITIAL);
  const [rows, setRows] = useState([]);
  const [errors, setErrors] = useState({});
  const [message, setMessage] = useState(null);
  const values = useRef(v);
  values.current = v;
  const set = (k) => (x) => setV({ ...values.current, [k]: x });
  const wasm = v.executor === 'wasm';
  const onSubmit = async (ev) => {
    ev.preventDefault();
    setErrors({}); setMessage(null);
    let body;
    try { body = jobBody(v, wasm ? [] : rows); } catch (e) {
      if (e instanceof FormError) setErrors({ [e.field]: e.message });
      setMessage(e.message);
      return;
    }
    try { onQuote(await post('/run/request-service', body), body); } catch (e) {
      if (e instanceof ApiError) setErrors(jobErrors(e));
      setMessage(e.message || String(e));
    }
  };
  const kind = (value, label) => html`<label class="choice"><input type="radio" name="job-kind" id=${`job-kind-${value}`}
    value=${value} checked=${v.executor === value} onChange=${() => set('executor')(value)} /> ${label}</label>`;
  return html`<form id="job-form" onSubmit=${onSubmit} aria-labelledby="job-title">
    <h2 id="job-title">New job</h2>
    <fieldset class="row" id="job-kind"><legend>Runs</legend>${kind('docker', 'a container image')}${kind('wasm', 'a WASM module')}</fieldset>
    ${wasm
      ? html`<${ModulePicker} value=${v.module} onChange=${set('module')} error=${errors.module} />
        <${Field} id="job-args" label="Arguments" value=${v.args} onInput=${set('args')} error=${errors.args}
          hint="words and quotes as in a shell, or a JSON array" />`
      : html`<${Field} id="job-image" label="Container image" value=${v.image} onInput=${set('image')}
          error=${errors.image} required />
        <${Field} id="job-command" label="Command" value=${v.command} onInput=${set('command')} error=${errors.command}
          hint="words and quotes as in a shell, or a JSON array" />`}
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
    ${!wasm && html`<${Inputs} rows=${rows} setRows=${setRows} errors=${errors} />
      <${Checkpoints} v=${v} set=${set} errors=${errors} />`}
    ${message && html`<p class="error" id="job-error" role="alert">${message}</p>`}
    <button type="submit" id="quote-btn">Get a quote</button>
  </form>`;
}
