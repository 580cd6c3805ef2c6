// Shared by the end-to-end test files: start `vkllm serve` on port 0 (found through its
// "listening on" log line, ready once /health answers 200), read /metrics, stream a chat.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test as nodeTest } from 'node:test';

export const [vkllm, model] = process.argv.slice(2);
if (!vkllm || !model) {
  console.error('usage: node <file>.mjs <vkllm> <model.gguf>');
  process.exit(2);
}

// node:test's test(), skipping (visibly, with the reason) the tests whose names match the
// regular expression VKLLM_E2E_SKIP: scripts/test.sh's ThreadSanitizer run leaves out the ones
// that test parsing and templates rather than threads (the Release run has them all).
export function test(name, options, fn) {
  if (typeof options === 'function') [options, fn] = [{}, options];
  const pattern = process.env.VKLLM_E2E_SKIP;
  if (pattern && new RegExp(pattern).test(name)) options = { ...options, skip: `VKLLM_E2E_SKIP=${pattern}` };
  return nodeTest(name, options, fn);
}

const servers = [];
after(() => servers.forEach((p) => p.exitCode === null && p.kill('SIGKILL')));

// Starts a server; `ready: false` returns once it listens (before the model loads); `gguf`
// serves another model file; `models: true` names the models in `extra` itself.
export async function startServer(extra = [], { env = {}, ready = true, gguf = model, models = false } = {}) {
  const args = models ? ['serve', '--port', '0', ...extra]
    : ['serve', '-m', gguf, '--port', '0', '--served-model-name', 'test-model', ...extra];
  const proc = spawn(vkllm, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  servers.push(proc);
  let log = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 120000);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
  // It listens before the model is loaded (503 until then): wait for ready.
  for (let i = 0; ready; ++i) {
    const res = await fetch(`${url}/health`).catch(() => null);
    if (res?.status === 200) break;
    if (i > 1200) throw new Error(`server never became ready:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, url, exited, log: () => log };
}

export async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (name, label = '') => {
    const m = text.match(new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} ([0-9.e+-]+)$`, 'm'));
    return m ? Number(m[1]) : undefined;
  };
  return { text, get };
}

export async function waitIdle(url) {
  for (let i = 0; i < 400; i++) {
    const m = await metrics(url);
    if (m.get('vllm:num_requests_running') === 0 && m.get('vllm:num_requests_waiting') === 0 &&
        m.get('vllm:gpu_cache_usage_perc') === 0) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  return metrics(url);
}

// Reads an SSE stream with fetch; returns the text, the reasoning and the raw events.
export async function streamChat(url, body, { abortAfter, path = '/v1/chat/completions' } = {}) {
  const ctrl = new AbortController();
  const res = await fetch(`${url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }), signal: ctrl.signal,
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', text = '', reasoning = '', events = 0, done = false, finish = null;
  const errors = [];  // error events' objects
  try {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        assert.ok(ev.startsWith('data: '), `SSE event: ${ev}`);
        const data = ev.slice(6);
        if (data === '[DONE]') { done = true; continue; }
        const j = JSON.parse(data);
        events++;
        if (j.error) errors.push(j.error);
        const c = j.choices?.[0];
        text += c?.delta?.content ?? c?.text ?? '';
        reasoning += c?.delta?.reasoning_content ?? '';
        if (c?.finish_reason) finish = c.finish_reason;
        if (abortAfter !== undefined && events >= abortAfter) { ctrl.abort(); return { text, events, done, aborted: true }; }
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  }
  return { text, reasoning, events, done, finish, errors };
}

export const chatBody = (content, max_tokens = 24) => ({
  model: 'test-model', messages: [{ role: 'user', content }], max_tokens, temperature: 0,
});

export async function post(url, path, body, headers = { 'content-type': 'application/json' }) {
  return fetch(`${url}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}
