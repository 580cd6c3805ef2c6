// Several models in one server (issue 16): two models from a directory, first with room for
// both (a load never holds up requests to a loaded model; the load and unload routes), then
// with a device memory budget that fits one (each request loads its model, unloading the other
// once its in-flight requests finished; /v1/models lists both, /metrics labels both).
// Usage: node e2e_models.mjs <vkllm binary> <model.gguf>
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vkllm, model, startServer, metrics, post, test } from './helpers.mjs';

// The directory: the suite's model as "story" and a random-weight micro model as "micro".
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vkllm-models-'));
fs.copyFileSync(model, path.join(dir, 'story.gguf'));
const made = spawnSync(vkllm, ['make-model', '--preset', 'micro', '--type', 'q8_0', '--seed', '7', '-o',
  path.join(dir, 'micro.gguf')], { encoding: 'utf8' });
assert.equal(made.status, 0, made.stderr);
fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a model');  // not listed: only .gguf files are

const common = ['--models-dir', dir, '-c', '256', '--max-num-seqs', '4'];
const completion = (name, max_tokens = 8, extra = {}) =>
  ({ model: name, prompt: 'Once upon a time', max_tokens, temperature: 0, ...extra });

async function listed(url) {
  const res = await fetch(`${url}/v1/models`);
  assert.equal(res.status, 200);
  return Object.fromEntries((await res.json()).data.map((m) => [m.id, m]));
}

let footprint = {};

test('room for both: loading one never holds up requests to the other; load and unload routes', async () => {
  // Every load takes 1.5 s more (the test hook): long enough to see requests go by meanwhile.
  const s = await startServer(common, { models: true, env: { VKLLM_TEST_LOAD_DELAY_MS: '1500' } });
  let m = await listed(s.url);
  assert.deepEqual(Object.keys(m).sort(), ['micro', 'story']);
  assert.equal(m.notes, undefined);
  // The default (the first by name, micro) loads at start; /health is 200 meanwhile.
  assert.equal((await fetch(`${s.url}/health`)).status, 200);
  let res = await post(s.url, '/v1/models/micro/load', {});
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status, 'loaded');

  const t0 = Date.now();
  const loading = post(s.url, '/v1/models/story/load', {}).then(async (r) => ({ r, j: await r.json(), at: Date.now() - t0 }));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await listed(s.url)).story.status, 'loading');
  res = await post(s.url, '/v1/completions', completion('micro'));
  const servedAt = Date.now() - t0;
  assert.equal(res.status, 200);
  assert.equal((await res.json()).model, 'micro');
  const loaded = await loading;
  assert.equal(loaded.r.status, 200);
  assert.equal(loaded.j.status, 'loaded');
  assert.ok(servedAt < loaded.at, `the request to micro (${servedAt} ms) waited for story's load (${loaded.at} ms)`);
  assert.ok(loaded.at >= 1500);

  m = await listed(s.url);
  for (const id of ['micro', 'story']) {
    assert.equal(m[id].status, 'loaded');
    assert.equal(m[id].max_model_len, 256);
    assert.ok(m[id].device_memory_bytes > 0);
    footprint[id] = m[id].device_memory_bytes;
  }
  res = await post(s.url, '/v1/models/story/unload', {});
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status, 'unloaded');
  assert.equal((await post(s.url, '/v1/models/nothing/load', {})).status, 404);
  assert.equal((await fetch(`${s.url}/v1/models/story/load`)).status, 404);  // a GET names no model
  s.proc.kill('SIGTERM');
  assert.equal((await s.exited).code, 0);
});

test('a budget that fits one: each request loads its model; in-flight requests finish before it is unloaded', async () => {
  const [small, big] = Object.values(footprint).sort((a, b) => a - b);
  const budget = big + Math.floor(small / 2);
  const s = await startServer([...common, '--memory-budget', String(budget)], { models: true });
  // The default model (micro) loads at start.
  for (let i = 0; i < 100 && (await listed(s.url)).micro.status !== 'loaded'; i++) await new Promise((r) => setTimeout(r, 50));

  // A long stream on story; once its first token came, a request to micro.
  let res = await post(s.url, '/v1/completions', { ...completion('story', 120, { ignore_eos: true }), stream: true });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let sse = '';
  const first = await reader.read();
  sse += dec.decode(first.value, { stream: true });
  assert.equal((await listed(s.url)).micro.status, 'unloaded');
  const other = post(s.url, '/v1/completions', completion('micro')).then(async (r) => ({ r, j: await r.json(), end: Date.now() }));
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    sse += dec.decode(value, { stream: true });
  }
  const streamEnd = Date.now();
  const events = sse.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(chunks.filter((c) => c.error).length, 0, 'the stream ended with an error');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
  const b = await other;
  assert.equal(b.r.status, 200);
  assert.equal(b.j.model, 'micro');
  assert.equal(b.j.usage.completion_tokens, 8);
  assert.ok(b.end >= streamEnd, 'micro was answered before the stream on story ended');
  assert.match(s.log(), /unloading model 'story' to make room for 'micro'/);
  let m = await listed(s.url);
  assert.equal(m.story.status, 'unloaded');
  assert.equal(m.micro.status, 'loaded');

  // And back: story again, micro unloaded.
  res = await post(s.url, '/v1/completions', completion('story'));
  assert.equal(res.status, 200);
  m = await listed(s.url);
  assert.equal(m.story.status, 'loaded');
  assert.equal(m.micro.status, 'unloaded');
  assert.equal((await post(s.url, '/v1/completions', completion('elsewhere'))).status, 404);

  // Both labelled; story's counters count both of its loads (120 + 8 tokens).
  const x = await metrics(s.url);
  assert.equal(x.get('vllm:request_success_total', 'model_name="story"'), 2);
  assert.equal(x.get('vllm:request_success_total', 'model_name="micro"'), 1);
  assert.equal(x.get('vllm:generation_tokens_total', 'model_name="story"'), 128);
  assert.equal(x.get('vllm:generation_tokens_total', 'model_name="micro"'), 8);
  assert.equal(x.text.match(/^# TYPE vllm:generation_tokens_total /gm).length, 1);
  s.proc.kill('SIGTERM');
  assert.equal((await s.exited).code, 0);
  fs.rmSync(dir, { recursive: true, force: true });
});
