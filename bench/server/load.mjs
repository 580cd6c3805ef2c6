// Load generator for `vkllm serve` (or any OpenAI-compatible server): at each concurrency level,
// that many clients each send streaming chat completions back to back for --duration seconds.
// Reports requests/s, time to first token p50/p99 and inter-token latency p50/p99.
// Usage: node load.mjs --url http://127.0.0.1:8080 [--concurrency 1,8,32] [--duration 30]
//        [--max-tokens 64] [--model name] [--api-key KEY]
// Without --model it asks the server's /v1/models for the served name (vkllm refuses a name it
// does not serve with 404 model_not_found, as vLLM does).
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const url = args.url ?? 'http://127.0.0.1:8080';
const levels = (args.concurrency ?? '1,8,32').split(',').map(Number);
const duration = Number(args.duration ?? 30) * 1000;
const maxTokens = Number(args['max-tokens'] ?? 64);
const headers = { 'content-type': 'application/json' };
if (args['api-key']) headers.authorization = `Bearer ${args['api-key']}`;
const model = args.model ?? (await (await fetch(`${url}/v1/models`, { headers })).json()).data[0].id;

const pct = (xs, q) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function one(i, stats) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers,
    body: JSON.stringify({
      model, stream: true, max_tokens: maxTokens, temperature: 0, ignore_eos: true,
      messages: [{ role: 'user', content: `Request ${i}: tell me a story about the number ${i}.` }],
    }),
  });
  if (res.status !== 200) { stats.errors++; await res.text(); return; }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (!j.choices?.[0]?.delta?.content) continue;
      const now = performance.now();
      if (last === null) stats.ttft.push(now - t0); else stats.itl.push(now - last);
      last = now;
      stats.tokens++;
    }
  }
  stats.requests++;
}

console.log('| concurrency | requests | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | errors |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const c of levels) {
  const stats = { requests: 0, tokens: 0, errors: 0, ttft: [], itl: [] };
  const start = performance.now();
  let n = 0;
  await Promise.all(Array.from({ length: c }, async () => {
    while (performance.now() - start < duration) await one(n++, stats);
  }));
  const secs = (performance.now() - start) / 1000;
  const f = (x) => (Number.isNaN(x) ? '-' : x.toFixed(1));
  console.log(`| ${c} | ${stats.requests} | ${(stats.requests / secs).toFixed(2)} | ${(stats.tokens / secs).toFixed(1)} | ${f(pct(stats.ttft, 0.5))} | ${f(pct(stats.ttft, 0.99))} | ${f(pct(stats.itl, 0.5))} | ${f(pct(stats.itl, 0.99))} | ${stats.errors} |`);
}
