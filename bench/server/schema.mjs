// Tokens/s of `vkllm serve` with and without a JSON schema, side by side in one run: at each
// concurrency level, `reps` rounds of that many concurrent non-streamed chat completions, first
// unconstrained, then with response_format json_schema (an array of 24 short strings, so every
// step is constrained), alternating. Reports the median generated tokens/s of each and the
// median of the pairs' ratios.
// Usage: node schema.mjs --url http://127.0.0.1:8080 [--concurrency 1,8] [--reps 5] [--max-tokens 128]
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const url = args.url ?? 'http://127.0.0.1:8080';
const levels = (args.concurrency ?? '1,8').split(',').map(Number);
const reps = Number(args.reps ?? 5);
const maxTokens = Number(args['max-tokens'] ?? 128);
const schema = { type: 'array', items: { type: 'string', maxLength: 12 }, minItems: 24, maxItems: 24 };

async function round(n, constrained, seed) {
  const t0 = performance.now();
  const bodies = Array.from({ length: n }, (_, i) => ({
    messages: [{ role: 'user', content: `List ${i} things` }], max_tokens: maxTokens, temperature: 1, seed: seed + i,
    ...(constrained ? { response_format: { type: 'json_schema', json_schema: { name: 'list', schema } } } : {}),
  }));
  const results = await Promise.all(bodies.map(async (b) => {
    const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
    const j = await r.json();
    if (!r.ok) throw new Error(JSON.stringify(j));
    return j.usage.completion_tokens;
  }));
  const tokens = results.reduce((a, b) => a + b, 0);
  return tokens / ((performance.now() - t0) / 1000);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
await round(1, true, 1);  // warm: pipelines, the vocabulary's trie
await round(1, false, 1);
// Rounds alternate, and which of a pair goes first alternates too; besides the medians of each,
// the median and quartiles of the pairs' ratios (each pair ran seconds apart, so the machine's
// slow drifts cancel in it).
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const pct = (x) => `${(100 * (x - 1)).toFixed(1)}%`;
console.log('concurrency  plain tok/s  schema tok/s  change  pairs: median change [quartiles]');
for (const n of levels) {
  const plain = [], constrained = [], ratios = [];
  for (let r = 0; r < reps; ++r) {
    let p, c;
    if (r % 2 === 0) {
      p = await round(n, false, 100 * r);
      c = await round(n, true, 100 * r);
    } else {
      c = await round(n, true, 100 * r);
      p = await round(n, false, 100 * r);
    }
    plain.push(p);
    constrained.push(c);
    ratios.push(c / p);
  }
  const p = median(plain), c = median(constrained);
  console.log(`${String(n).padStart(11)}  ${p.toFixed(1).padStart(11)}  ${c.toFixed(1).padStart(12)}  ${pct(c / p).padStart(6)}  ` +
              `${pct(median(ratios)).padStart(6)} [${pct(quantile(ratios, 0.25))}, ${pct(quantile(ratios, 0.75))}]`);
}
