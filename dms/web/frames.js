// Pure: a /run/deploy frame as the job's log shows it (its lines, or a note, and the state it moves to).
import { logLines } from './api.js';

export const FRAME_STATE = { 'job-submitted': 'submitted', 'job-completed': 'completed', 'job-failed': 'failed' };

export function frameEntry(f) {
  const entry = { action: f.action, seq: f.seq };
  if (f.action === 'log-stream-response') entry.lines = logLines(f);
  if (FRAME_STATE[f.action]) entry.state = FRAME_STATE[f.action];
  if (f.action === 'deployment-response') {
    const ok = f.message && f.message.success;
    entry.state = ok ? 'running' : 'failed';
    entry.note = f.message && f.message.content;
  }
  if (f.action === 'job-failed') entry.note = typeof f.message === 'string' ? f.message : JSON.stringify(f.message);
  if (f.action === 'job-completed' && f.detail) entry.note = `exit code ${f.detail.exit_code}`;
  if (f.action === 'job-resumed' && f.detail) {  // the provider was lost: run N goes on elsewhere from a checkpoint
    const d = f.detail;
    entry.note = `run ${d.run} on ${d.compute_provider}${d.checkpoint ? ` from checkpoint ${d.checkpoint}` : ''}`
      + `${d.reason ? ` (${d.reason})` : ''}`;
  }
  return entry;
}
