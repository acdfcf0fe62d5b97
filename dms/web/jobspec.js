// Pure: the job form's values into the body of POST /run/request-service (dms/jobs/spec.py's JobSpec).
// The daemon validates everything again; these only catch what the page itself must turn into JSON.
import { splitCommand } from './api.js';

// A problem with one field of the form, shown beside it.
export class FormError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

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

// A file's name as a path under /inputs: plain names only (letters, digits, . _ -), as the daemon asks.
export function inputPath(name) {
  const clean = String(name).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 128);
  return clean === '' || clean === '.' || clean === '..' ? 'input' : clean;
}

// A file's name as a name in the module registry: starts alphanumeric, at most 128 of [A-Za-z0-9._-].
export function moduleName(fileName) {
  const stem = String(fileName).replace(/\.(wasm|wat)$/i, '').replace(/[^A-Za-z0-9._-]+/g, '-');
  const clean = stem.replace(/^[^A-Za-z0-9]+/, '').slice(0, 100);
  return clean || 'module';
}

function parsed(field, fn, text) {
  try { return fn(text); } catch (e) { throw new FormError(field, e.message); }
}

// v: the form's strings and booleans; inputs: [{source, path}] (an upload's sha256 or a URL).
export function jobBody(v, inputs = []) {
  const body = {
    executor: v.executor,
    env: parsed('env', parseEnv, v.env || ''),
    resources: { cpu_mhz: Number(v.cpu_mhz), cores: Number(v.cores), memory_mb: Number(v.memory_mb) },
    max_price: Number(v.max_price),
    duration_s: Number(v.duration_s),
  };
  if (v.executor === 'wasm') {
    if (!v.module) throw new FormError('module', 'choose a module from the registry, or upload a .wasm file');
    body.module = v.module;
    body.args = parsed('args', splitCommand, v.args || '');
  } else {
    body.image = v.image.trim();
    body.command = parsed('command', splitCommand, v.command);
    for (const [i, inp] of inputs.entries()) {
      if (!inp.source) throw new FormError(`inputs.${i}.source`, 'still uploading, or no URL given');
    }
    if (inputs.length) body.inputs = inputs.map((i) => ({ source: i.source.trim(), path: i.path.trim() }));
    if (v.checkpoint) body.checkpoint = { path: v.cp_path.trim(), interval_s: Number(v.cp_interval) };
    if (v.resume) body.resume = 'on-failure';
  }
  if (v.target && v.target.trim()) body.target_peer = v.target.trim();
  return body;
}

// The daemon's refusal, as {form field: message}: the last name ("cpu_mhz") and the full path
// ("inputs.0.path") both, so a field inside a list finds its own.
export function jobErrors(e) {
  return { ...(e.fields ? e.fields() : {}), ...(e.paths ? e.paths() : {}) };
}
