// llama.cpp as a test oracle for the weight formats: for each type, a random-weight model that
// `vkllm make-model` writes (the tiny preset: rows of 768, whole K-quant super-blocks) is run
// greedily from the same token ids by llama.cpp's Vulkan build (node-llama-cpp, on the same
// device: GGML_VK_VISIBLE_DEVICES) and by `vkllm serve` (/v1/completions with a token-id prompt);
// the two texts must be equal. Our own encoder and decoder could agree with each other and still
// disagree with every other GGUF reader; this catches that. The Vulkan build, not the CPU one:
// random weights leave logit margins of a few hundredths, and llama.cpp's CPU dot products
// quantize the activations to 8 bits (its greedy text for q4_0, q2_K or iq4_xs parts from the
// f32 paths after a few tokens), while its Vulkan matrix-vector kernels keep them in float.
// Usage: node llamacpp_oracle.mjs <vkllm binary> <work dir> [type ...]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const [vkllm, work, ...only] = process.argv.slice(2);
// By default the layout with the most to get wrong (q3_K: 6-bit scales split over 12 bytes, a
// separate high-bit mask) in four families: llama, gemma2 (post-norms, GeGLU, soft-caps),
// qwen3moe (expert tensors, routing) and gpt-oss (its experts MXFP4). One weight type for all: on lavapipe llama.cpp
// compiles its pipelines anew for every model it loads, about 3 minutes for the first model
// of a cold cache, 1 for another of the same type, 2 to 4 for one of another type
// (bench/RESULTS.md). Any other type by name: bench/RESULTS.md records runs over all of them
// (iq4_xs: scales split over two fields, a level table) and over the other families.
// An entry "preset:type" takes another preset: tiny-phi3 (tiny's shapes as a phi3, fused QKV
// and gate/up), tiny-gemma2 and tiny-gemma3 (post-norms, GeGLU, soft-caps, QK-norm, two RoPE
// bases) check that llama.cpp reads our files of those families as we do; tiny-qwen3moe,
// tiny-mixtral and tiny-qwen2moe its Mixture-of-Experts layers (expert tensors, routing rules,
// qwen2moe's gated shared expert); tiny-gpt-oss gpt-oss's (attention sinks, Q/K/V, output, router
// and expert biases, the clamped SwiGLU, the softmax of the chosen experts, MXFP4 experts, YaRN).
const types = only.length ? only : ['q3_k', 'tiny-gemma2:q3_k', 'tiny-qwen3moe:q3_k', 'tiny-gpt-oss:q3_k'];
const PROMPT = [1, 450, 1200, 77, 3000, 9, 512, 2222];
const N = 8;

const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
process.env.GGML_VK_VISIBLE_DEVICES ??= '0';
const llama = await getLlama({ gpu: 'vulkan', build: 'never', skipDownload: true, usePrebuiltBinaries: true,
  logLevel: LlamaLogLevel.error, progressLogs: false });
if (llama.gpu !== 'vulkan') throw new Error(`llama.cpp's Vulkan build did not load (gpu=${llama.gpu})`);

async function llamacpp(file) {
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 'max' });
  const context = await model.createContext({ contextSize: 256, sequences: 1 });
  const out = [];
  for await (const t of context.getSequence().evaluate(PROMPT, { temperature: 0, yieldEogToken: true })) {
    out.push(t);
    if (out.length >= N) break;
  }
  const text = model.detokenize(out);
  await context.dispose();
  await model.dispose();
  return text;
}

async function ours(file) {
  const proc = spawn(vkllm, ['serve', '-m', file, '--port', '0', '--deterministic'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on (http:\/\/[^ ]+)/);
      if (m && log.includes('ready:')) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`vkllm serve exited ${code}:\n${log}`)));
  });
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: N, temperature: 0, ignore_eos: true }),
    });
    const j = await res.json();
    if (res.status !== 200) throw new Error(`${res.status}: ${JSON.stringify(j)}`);
    return j.choices[0].text;
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.on('exit', r));
  }
}

let failed = 0;
for (const entry of types) {
  const [preset, type] = entry.includes(':') ? entry.split(':') : ['tiny', entry];
  const file = path.join(work, `${preset}-${type}.gguf`);
  if (!fs.existsSync(file)) {
    const r = spawnSync(vkllm, ['make-model', '--preset', preset, '--type', type, '-o', file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make-model ${type}: ${r.stderr}`);
  }
  const t0 = Date.now();
  const expected = await llamacpp(file);
  const t1 = Date.now();
  const got = await ours(file);
  const t2 = Date.now();
  const ok = got === expected;
  if (!ok) failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${entry}: llama.cpp ${JSON.stringify(expected)}, vkllm ${JSON.stringify(got)} ` +
    `(llama.cpp ${((t1 - t0) / 1000).toFixed(0)} s, vkllm ${((t2 - t1) / 1000).toFixed(0)} s)`);
}
console.log(`${types.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
