#!/usr/bin/env node
// Baseline benchmark of llama.cpp (prebuilt binaries shipped by node-llama-cpp) on a GGUF model,
// for comparison with vkllm in bench/RESULTS.md.
//
//   node bench.mjs --model X.gguf --backend vulkan|cpu [-p 512] [-n 128] [-r 3] [--threads N]
//                  [--batch 512] [--flash-attn] [--verbose]
//
// What is measured (both through LlamaContextSequence, the lowest-level evaluation API that
// node-llama-cpp exposes: no chat session, no text detokenization, no sampling for pp):
//
// - pp (prompt processing): a fixed pseudo-random sequence of -p token ids (BOS first, then ids
//   drawn with a fixed-seed LCG from the vocabulary, like llama-bench's random prompt) is
//   evaluated with sequence.evaluateWithoutGeneratingNewTokens() into an empty sequence
//   (sequence.clearHistory() before each repetition, so the KV cache starts empty). node-llama-cpp
//   sends it to llama_decode in batches of --batch tokens (n_batch = n_ubatch = --batch, default
//   512 as llama-bench's n_ubatch). No logits are requested. pp t/s = p / wall time of that call.
//
// - tg (text generation): the sequence is cleared, a short fixed context (BOS + 7 tokens) is
//   evaluated untimed, then the last context token is passed to sequence.evaluate() with greedy
//   sampling (temperature 0, EOG tokens yielded and fed back rather than stopping); each step of
//   the generator is one llama_decode of one token plus the greedy pick of the next one, and the
//   generator is stopped after -n tokens. tg t/s = n / wall time of the n steps (so this includes
//   the argmax sampling and the JS<->native round trip per token, which llama-bench does not).
//
// Each test runs once as warm-up (not counted), then -r times; the medians are printed as a
// markdown table row (header on stderr) and as one JSON line on stdout.
//
// node-llama-cpp is told never to build or download llama.cpp (build: "never", skipDownload);
// it uses the prebuilt binaries of @node-llama-cpp/linux-x64 (cpu) or
// @node-llama-cpp/linux-x64-vulkan (vulkan). llama.cpp's Vulkan backend skips CPU Vulkan
// devices such as Mesa lavapipe unless GGML_VK_VISIBLE_DEVICES names them; for --backend vulkan
// this script sets GGML_VK_VISIBLE_DEVICES=0 when it is not set already.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
    options: {
        model: { type: "string", short: "m" },
        backend: { type: "string", short: "b", default: "vulkan" },
        p: { type: "string", short: "p", default: "512" },
        n: { type: "string", short: "n", default: "128" },
        r: { type: "string", short: "r", default: "3" },
        threads: { type: "string", short: "t" },
        batch: { type: "string", default: "512" },
        "flash-attn": { type: "boolean", default: false },
        verbose: { type: "boolean", short: "v", default: false },
        help: { type: "boolean", short: "h", default: false }
    },
    strict: true
});

function usage(code) {
    console.error("usage: node bench.mjs --model X.gguf --backend vulkan|cpu [-p 512] [-n 128] [-r 3] " +
        "[--threads N] [--batch 512] [--flash-attn] [--verbose]");
    process.exit(code);
}
if (args.help) usage(0);
if (!args.model) usage(2);
if (args.backend !== "vulkan" && args.backend !== "cpu") {
    console.error(`--backend must be vulkan or cpu, not ${args.backend}`);
    usage(2);
}
const intArg = (name, v, min) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) {
        console.error(`-${name} must be an integer >= ${min}, got ${v}`);
        process.exit(2);
    }
    return x;
};
const nPrompt = intArg("p", args.p, 1);
const nGen = intArg("n", args.n, 1);
const reps = intArg("r", args.r, 1);
const threads = intArg("threads", args.threads ?? String(os.availableParallelism()), 1);
const batchSize = intArg("batch", args.batch, 1);
const modelPath = path.resolve(args.model);
if (!fs.existsSync(modelPath)) {
    console.error(`model not found: ${modelPath}`);
    process.exit(2);
}

// Must be in the environment before the native library enumerates Vulkan devices.
if (args.backend === "vulkan" && process.env.GGML_VK_VISIBLE_DEVICES === undefined)
    process.env.GGML_VK_VISIBLE_DEVICES = "0";

const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
const here = path.dirname(fileURLToPath(import.meta.url));
const nlcVersion = JSON.parse(fs.readFileSync(
    path.join(here, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version;

const log = (...a) => console.error("[bench]", ...a);

const llama = await getLlama({
    gpu: args.backend === "vulkan" ? "vulkan" : false,
    build: "never",          // never compile llama.cpp from source
    skipDownload: true,      // never download llama.cpp sources
    usePrebuiltBinaries: true,
    maxThreads: threads,
    logLevel: args.verbose ? LlamaLogLevel.debug : LlamaLogLevel.warn,
    progressLogs: false
});
if (args.backend === "vulkan" && llama.gpu !== "vulkan")
    throw new Error(`asked for vulkan but node-llama-cpp loaded gpu=${llama.gpu}`);
if (args.backend === "cpu" && llama.gpu !== false)
    throw new Error(`asked for cpu but node-llama-cpp loaded gpu=${llama.gpu}`);

const deviceNames = args.backend === "vulkan" ? await llama.getGpuDeviceNames() : [];
const device = args.backend === "vulkan" ? (deviceNames.join(", ") || "unknown") : "CPU";
log(`node-llama-cpp ${nlcVersion}, llama.cpp ${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release} ` +
    `(${llama.buildType}), gpu=${llama.gpu}, device=${device}, threads=${threads}`);
if (args.verbose) log(`system info: ${llama.systemInfo}`);

const model = await llama.loadModel({
    modelPath,
    gpuLayers: args.backend === "vulkan" ? "max" : 0,
    defaultContextFlashAttention: args["flash-attn"]
});
const nLayers = model.fileInsights.totalLayers;
if (args.backend === "vulkan" && model.gpuLayers < nLayers)
    throw new Error(`only ${model.gpuLayers}/${nLayers} layers offloaded to the GPU`);
log(`model ${path.basename(modelPath)}: ${model.typeDescription}, ${(model.size / 2 ** 20).toFixed(2)} MiB, ` +
    `gpuLayers ${model.gpuLayers}/${nLayers}, train ctx ${model.trainContextSize}`);

const tgContextLen = 8;
// Headroom past the prompt: a context that the prompt fills exactly makes node-llama-cpp shift
// it (drop its first tokens) during pp, and then pp measures fewer tokens than asked.
const context = await model.createContext({
    contextSize: Math.max(nPrompt, tgContextLen + nGen) + 256,
    batchSize: Math.min(batchSize, Math.max(nPrompt, tgContextLen + nGen)),
    sequences: 1,
    threads: { ideal: threads, min: threads },
    flashAttention: args["flash-attn"]
});
const seq = context.getSequence();
log(`context: size ${context.contextSize}, batch ${context.batchSize}, threads ${context.idealThreads}, ` +
    `flash attention ${context.flashAttention}`);

// Fixed pseudo-random token ids (BOS first when the model has one), as llama-bench does.
const nVocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ??
    model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight")?.dimensions?.[1];
if (!Number.isInteger(nVocab) || nVocab < 2) throw new Error(`cannot determine vocabulary size (${nVocab})`);
function fixedTokens(count, seed) {
    let s = seed >>> 0;
    const out = [];
    if (model.tokens.bos != null) out.push(model.tokens.bos);
    while (out.length < count) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        out.push(s % nVocab);
    }
    return out.slice(0, count);
}
const promptTokens = fixedTokens(nPrompt, 1234);
const tgContext = fixedTokens(tgContextLen, 5678);

async function runPP() {
    await seq.clearHistory();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(promptTokens);
    const dt = (performance.now() - t0) / 1000;
    if (seq.nextTokenIndex !== nPrompt)
        throw new Error(`pp: sequence holds ${seq.nextTokenIndex} tokens, expected ${nPrompt}`);
    return nPrompt / dt;
}

async function runTG() {
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens(tgContext.slice(0, -1));
    let count = 0;
    const t0 = performance.now();
    const gen = seq.evaluate(tgContext.slice(-1), { temperature: 0, yieldEogToken: true });
    for await (const _token of gen) {
        if (++count >= nGen) break; // break returns the generator: no further decode
    }
    const dt = (performance.now() - t0) / 1000;
    if (count !== nGen) throw new Error(`tg: generated ${count} tokens, expected ${nGen}`);
    return nGen / dt;
}

const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function measure(name, fn) {
    const warm = await fn();
    log(`${name} warm-up: ${warm.toFixed(2)} t/s`);
    const xs = [];
    for (let i = 0; i < reps; i++) {
        xs.push(await fn());
        log(`${name} rep ${i + 1}/${reps}: ${xs[i].toFixed(2)} t/s`);
    }
    return xs;
}

const ppAll = await measure(`pp${nPrompt}`, runPP);
const tgAll = await measure(`tg${nGen}`, runTG);
const pp = median(ppAll);
const tg = median(tgAll);

// node-llama-cpp reports its own binary release tag (llamaCppRelease); the llama.cpp commit the
// binaries were built from is only embedded in libllama-common.so (LLAMA_COMMIT, a short hex
// string). Best effort: the only NUL-delimited 7..40-digit hex string in it that is not a digit
// table; null when that is not unique.
function llamaCppCommit() {
    try {
        const pkg = args.backend === "vulkan" ? "linux-x64-vulkan" : "linux-x64";
        const binDir = path.join(here, "node_modules", "@node-llama-cpp", pkg, "bins", pkg);
        const data = fs.readFileSync(path.join(binDir, "libllama-common.so")).toString("latin1");
        const found = new Set();
        for (const m of data.matchAll(/\0([0-9a-f]{7,40})\0/g))
            if (!/^0123456789/.test(m[1])) found.add(m[1]);
        return found.size === 1 ? [...found][0] : null;
    } catch {
        return null;
    }
}
const commit = llamaCppCommit();
const llamaCpp = `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}` + (commit ? ` (commit ${commit})` : "");
const build = `node-llama-cpp ${nlcVersion} ${llama.buildType} ${args.backend === "vulkan" ? "linux-x64-vulkan" : "linux-x64"}`;
console.error(`| model | backend | device | threads | pp${nPrompt} t/s | tg${nGen} t/s | llama.cpp |`);
console.error("|---|---|---|---|---|---|---|");
console.log(`| ${path.basename(modelPath)} | ${args.backend} | ${device} | ${threads} | ${pp.toFixed(2)} | ` +
    `${tg.toFixed(2)} | ${llamaCpp} (${build}) |`);
console.log(JSON.stringify({
    model: path.basename(modelPath),
    model_type: model.typeDescription,
    backend: args.backend,
    device,
    gpu_layers: model.gpuLayers,
    threads,
    batch: context.batchSize,
    flash_attn: context.flashAttention,
    n_prompt: nPrompt,
    n_gen: nGen,
    reps,
    pp_tps: Number(pp.toFixed(3)),
    tg_tps: Number(tg.toFixed(3)),
    pp_all: ppAll.map((x) => Number(x.toFixed(3))),
    tg_all: tgAll.map((x) => Number(x.toFixed(3))),
    llama_cpp: llamaCpp,
    llama_cpp_release: llama.llamaCppRelease.release,
    llama_cpp_commit: commit,
    node_llama_cpp: nlcVersion,
    build: llama.buildType
}));

await context.dispose();
await model.dispose();
await llama.dispose();
