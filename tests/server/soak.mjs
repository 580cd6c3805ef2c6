// Soak test of `vkllm serve`: N client loops send streamed /v1/completions back to back, a share of
// them deliberately drops its connection at a random moment, and every stream whose client stayed
// must end with `data: [DONE]`. Regression test for "a streamed response is sometimes cut right after
// its headers although the client stayed" (200 headers, then close, logged by the server as 499).
// Mixed in: non-streamed requests (a whole, well-formed response) and bad ones (an OpenAI-shaped
// 400). No response may be duplicated or crossed (each carries one id, every id once, within its
// max_tokens); its log has no error line. The server's RSS and device memory (/metrics
// vkllm:device_memory_bytes, reserved) after the warm-up, at half time and at the end are
// reported; with --max-rss-growth PCT each may exceed its warm-up value by at most PCT percent at
// the end. (The model writes its whole KV pool at load, so on lavapipe, whose device memory is
// the process's heap committed on first touch, the pool is in the RSS from the start.)
//
// Usage: node soak.mjs <vkllm binary> <model.gguf> [--duration SECONDS] [--clients N]
//                      [--drop-rate 0.2] [--seed S] [--max-rss-growth PCT]
// Node built-ins only (node:http with `agent: false` and `connection: close`: one connection per
// stream). Prints a summary and a final "N passed, M failed" line; exits 0 when all checks pass.
import http from 'node:http';
import fs from 'node:fs';
import { spawn } from 'node:child_process';

// ---- arguments ----
function usage(msg) {
  if (msg) console.error(`soak: ${msg}`);
  console.error('usage: node soak.mjs <vkllm> <model.gguf> [--duration SECONDS] [--clients N] [--drop-rate 0.2] [--seed S] [--max-rss-growth PCT]');
  process.exit(2);
}
const opts = { duration: 60, clients: 48, dropRate: 0.2, seed: undefined, maxRssGrowth: undefined };
const positional = [];
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      const n = Number(v);
      if (!Number.isFinite(n)) usage(`${flag}: not a number: ${v}`);
      return n;
    };
    if (flag === '--duration') opts.duration = value();
    else if (flag === '--clients') opts.clients = Math.trunc(value());
    else if (flag === '--drop-rate') opts.dropRate = value();
    else if (flag === '--seed') opts.seed = value() >>> 0;
    else if (flag === '--max-rss-growth') opts.maxRssGrowth = value();
    else if (flag === '-h' || flag === '--help') usage();
    else if (flag.startsWith('--')) usage(`unknown option ${flag}`);
    else positional.push(a);
  }
}
const [vkllm, model] = positional;
if (!vkllm || !model || positional.length > 2) usage();
if (!(opts.duration > 0) || !(opts.clients >= 1) || !(opts.dropRate >= 0 && opts.dropRate <= 1)) usage('bad option value');
if (opts.seed === undefined) opts.seed = (Date.now() ^ (process.pid << 16)) >>> 0;

// ---- seeded PRNG (mulberry32); each client gets its own stream so its requests repeat ----
function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const randInt = (rng, lo, hi) => lo + Math.floor(rng() * (hi - lo + 1));  // inclusive
const pick = (rng, xs) => xs[Math.floor(rng() * xs.length)];
const WORDS = ('once upon a time there was a little girl named lily she liked to play with her ball in the park ' +
  'one day big dog saw tree and ran happy sad mom said tom friend sun sky went home fun toy bird fly look ' +
  'at red blue green cat jump very good they were best friends').split(' ');

// ---- server ----
const LOG_LINES = 2000;
const serverLog = [];
let logPartial = '';
function logLine(line) {
  serverLog.push(line);
  if (serverLog.length > LOG_LINES) serverLog.splice(0, serverLog.length - LOG_LINES);
}
const logTail = (n) => serverLog.slice(-n).concat(logPartial ? [logPartial] : []).join('\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The server's resident memory in KiB (Linux; lavapipe's "device" memory is in it too).
const rssKiB = () => {
  try {
    return Number(fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m)?.[1]);
  } catch {
    return NaN;
  }
};

// GET with node:http, a fresh connection each time.
function httpGet(url, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

let proc = null;
let exited = null;
async function startServer() {
  const args = ['serve', '-m', model, '--port', '0', '--max-num-seqs', '32', '--served-model-name', 'soak'];
  proc = spawn(vkllm, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let onLine = null;
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    const lines = (logPartial + d).split('\n');
    logPartial = lines.pop();
    for (const l of lines) {
      logLine(l);
      onLine?.(l);
    }
  });
  const t0 = Date.now();
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no "listening on" line within 120 s')), 120000);
    onLine = (l) => {
      const m = l.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) {
        clearTimeout(timer);
        onLine = null;
        resolve(m[1]);
      }
    };
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`server exited during startup (code ${code}, signal ${signal})`)); });
  });
  // It listens before the model is loaded (503 until then): wait for ready.
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error('server exited while loading');
    if ((await httpGet(`${url}/health`)).status === 200) break;
    if (Date.now() - t0 > 120000) throw new Error('/health not 200 within 120 s');
    await sleep(100);
  }
  return url;
}
process.on('exit', () => {
  if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
});
process.on('SIGINT', () => process.exit(130));

// ---- metrics ----
async function readMetrics(url) {
  const { status, body } = await httpGet(`${url}/metrics`);
  const gauge = (name) => {
    const m = body.match(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+|NaN)\\s*$`, 'm'));
    return m ? Number(m[1]) : undefined;
  };
  // vkllm:http_responses_total{model_name="soak",code="499"} N; labels parsed loosely, absent = 0.
  let n499 = 0;
  for (const m of body.matchAll(/^vkllm:http_responses_total\{([^}]*)\}\s+([0-9.eE+-]+)\s*$/gm)) {
    if (/\b(?:status|code)="499"/.test(m[1])) n499 += Number(m[2]);
  }
  // vkllm:device_memory_bytes{...,intent="weights",state="reserved"} N: summed over the intents.
  let deviceReserved = 0;
  for (const m of body.matchAll(/^vkllm:device_memory_bytes\{([^}]*)\}\s+([0-9.eE+-]+)\s*$/gm)) {
    if (/\bstate="reserved"/.test(m[1])) deviceReserved += Number(m[2]);
  }
  return {
    ok: status === 200,
    deviceReserved,
    recordings: gauge('vkllm:engine_steps_total') - gauge('vkllm:command_buffer_replays_total'),
    running: gauge('vllm:num_requests_running'),
    waiting: gauge('vllm:num_requests_waiting'),
    cache: gauge('vllm:gpu_cache_usage_perc'),
    n499,
  };
}
const isIdle = (m) => m.ok && m.running === 0 && m.waiting === 0 && m.cache === 0;

// ---- one streamed request ----
const active = new Set();  // abort functions of the streams in flight (for the watchdog)
const stats = {
  streams: 0, completed: 0, dropped: 0, dropAfterFinish: 0, plannedDropsCompleted: 0, lost: [], errors: [],
  whole: 0, bad: 0, ids: new Set(),
};

function planRequest(rng) {
  const words = Array.from({ length: randInt(rng, 3, 60) }, () => pick(rng, WORDS));
  const body = { model: 'soak', prompt: words.join(' '), max_tokens: randInt(rng, 8, 120), temperature: pick(rng, [0, 0.8]), stream: true };
  const kind = rng();
  if (kind < 0.05) return { body: { ...body, temperature: 7 }, drop: null, bad: true };
  if (kind < 0.15) return { body: { ...body, stream: false }, drop: null };
  let drop = null;
  if (rng() < opts.dropRate) {
    const mode = pick(rng, ['sent', 'headers', 'event', 'delay']);
    drop = { mode, k: randInt(rng, 1, 5), delayMs: rng() * 300 };
  }
  return { body, drop };
}

function runStream(base, index, client, plan) {
  return new Promise((resolve) => {
    const st = {
      index, client, drop: plan.drop?.mode ?? null, headers: false, status: 0, contentType: '', events: 0,
      done: false, sawFinish: false, dropped: false, droppedAfterFinish: false, hung: false, connError: null,
      problems: [], body: '', t0: Date.now(), id: undefined, tokens: 0, plan,
    };
    const payload = JSON.stringify(plan.body);
    const u = new URL('/v1/completions', base);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), connection: 'close' },
    });
    let settled = false;
    let res = null;
    let buf = '';
    const timers = [];
    const settle = () => {
      if (settled) return;
      settled = true;
      timers.forEach(clearTimeout);
      active.delete(abortHung);
      st.ms = Date.now() - st.t0;
      resolve(st);
    };
    // The deliberate drop: only if the response has not completed ([DONE] not seen) by then.
    const dropNow = () => {
      if (settled || st.done) return;
      st.dropped = true;
      st.droppedAfterFinish = st.sawFinish;  // the server had nothing left to send but [DONE]
      req.destroy();
      settle();
    };
    // Let one more poll phase run first, so bytes already in the socket are read before judging
    // whether the stream completed (otherwise [DONE] sitting unread would make the count inexact).
    const scheduleDrop = () => setImmediate(() => setImmediate(dropNow));
    function abortHung() {
      st.hung = true;
      req.destroy();
      settle();
    }
    active.add(abortHung);
    const problem = (p) => { if (st.problems.length < 5) st.problems.push(p); };

    const onEvent = (raw) => {
      const lines = raw.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '' && !l.startsWith(':'));
      if (lines.length === 0) return;
      const data = [];
      for (const l of lines) {
        if (l.startsWith('data:')) data.push(l.slice(5).replace(/^ /, ''));
        else problem(`not a data line: ${l.slice(0, 120)}`);
      }
      const d = data.join('\n');
      if (st.done) return problem(`event after [DONE]: ${d.slice(0, 120)}`);
      if (d === '[DONE]') {
        st.done = true;
        return;
      }
      let j;
      try {
        j = JSON.parse(d);
      } catch {
        return problem(`unparsable event: ${d.slice(0, 120)}`);
      }
      st.events++;
      if (j?.error) problem(`error event: ${JSON.stringify(j.error).slice(0, 200)}`);
      if (j?.id !== undefined) {
        st.id ??= j.id;
        if (j.id !== st.id) problem(`an event of response ${j.id} in the stream of ${st.id}`);
      }
      if (Array.isArray(j?.choices)) st.tokens += j.choices.filter((c) => c?.text).length;
      if (Array.isArray(j?.choices) && j.choices.some((c) => c?.finish_reason)) st.sawFinish = true;
      if (plan.drop?.mode === 'event' && st.events === plan.drop.k) scheduleDrop();
    };

    req.on('response', (r) => {
      res = r;
      st.headers = true;
      st.status = r.statusCode;
      st.contentType = String(r.headers['content-type'] ?? '');
      r.setEncoding('utf8');
      if (plan.drop?.mode === 'headers') scheduleDrop();
      r.on('data', (chunk) => {
        if (st.status !== 200 || !plan.body.stream) {
          if (st.body.length < (plan.body.stream ? 500 : 1 << 20)) st.body += chunk;
          return;
        }
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          onEvent(ev);
        }
      });
      r.on('end', () => {
        if (buf.trim() !== '') problem(`trailing partial event: ${buf.slice(0, 120)}`);
        settle();
      });
      r.on('error', (e) => { st.connError ??= e.code || e.message; });
      r.on('close', settle);
    });
    req.on('error', (e) => {
      st.connError ??= e.code || e.message;
      if (!res) settle();
    });
    req.on('close', () => { if (!res) settle(); });
    req.on('finish', () => {  // the request is in the kernel
      if (plan.drop?.mode === 'sent') dropNow();
      else if (plan.drop?.mode === 'delay') timers.push(setTimeout(scheduleDrop, plan.drop.delayMs));
    });
    req.end(payload);
  });
}

// A response id seen twice is a duplicated (or crossed) response.
function claimId(st, problem) {
  if (st.id === undefined) return problem('no id');
  if (stats.ids.has(st.id)) problem(`response id ${st.id} seen twice`);
  stats.ids.add(st.id);
}

function classify(st) {
  const rec0 = { index: st.index, client: st.client, status: st.status, ms: st.ms };
  if (st.plan.bad || !st.plan.body.stream) {
    // Bad requests: an OpenAI-shaped 400; non-streamed ones: one whole response in max_tokens.
    let j = null;
    try { j = JSON.parse(st.body); } catch { /* reported below */ }
    if (st.plan.bad) {
      stats.bad++;
      if (st.status !== 400 || typeof j?.error?.message !== 'string' || j.error.param !== 'temperature') {
        stats.errors.push({ ...rec0, why: `bad request answered ${st.status}: ${st.body.slice(0, 200)}` });
      }
      return;
    }
    stats.whole++;
    const problems = [];
    st.id = j?.id;
    if (st.status !== 200 || typeof j?.choices?.[0]?.text !== 'string') problems.push(`${st.status}: ${st.body.slice(0, 200)}`);
    else if (!(j.usage?.completion_tokens <= st.plan.body.max_tokens)) problems.push(`usage ${JSON.stringify(j.usage)}`);
    claimId(st, (p) => problems.push(p));
    if (problems.length) stats.errors.push({ ...rec0, why: problems.join('; ') });
    return;
  }
  stats.streams++;
  if (st.drop && !st.dropped && !st.hung) stats.plannedDropsCompleted++;
  if (st.done && !st.dropped) {
    claimId(st, (p) => st.problems.push(p));
    if (st.tokens > st.plan.body.max_tokens) st.problems.push(`${st.tokens} token events for max_tokens ${st.plan.body.max_tokens}`);
  }
  const rec = {
    index: st.index, client: st.client, headers: st.headers, status: st.status, events: st.events,
    connError: st.connError, ms: st.ms, plannedDrop: st.drop, problems: st.problems,
  };
  if (st.dropped) {
    if (st.headers && st.status !== 200) {
      stats.errors.push({ ...rec, why: `status ${st.status} (deliberately dropped later)` });
    } else {
      stats.dropped++;
      if (st.droppedAfterFinish) stats.dropAfterFinish++;
    }
  } else if (st.headers && st.status !== 200) {
    stats.errors.push({ ...rec, why: `status ${st.status}: ${st.body.slice(0, 200)}` });
  } else if (!st.done) {
    stats.lost.push({ ...rec, why: st.hung ? 'hung (watchdog)' : 'ended without [DONE]' });
  } else if (!st.contentType.startsWith('text/event-stream')) {
    stats.errors.push({ ...rec, why: `content-type ${JSON.stringify(st.contentType)}` });
  } else if (st.problems.length) {
    stats.errors.push({ ...rec, why: st.problems.join('; ') });
  } else {
    stats.completed++;
  }
}

// ---- main ----
async function main() {
  console.log(`soak: seed ${opts.seed}, ${opts.clients} clients, ${opts.duration} s, drop rate ${opts.dropRate}`);
  let url;
  try {
    url = await startServer();
  } catch (e) {
    console.log(`soak: the server did not start: ${e.message}`);
    console.log(`--- server stderr (last 60 lines) ---\n${logTail(60)}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  console.log(`soak: server at ${url}`);

  const t0 = Date.now();
  const deadline = t0 + opts.duration * 1000;
  let next = 0;
  const clientLoop = async (c) => {
    const rng = mulberry32((opts.seed ^ Math.imul(c + 1, 0x9e3779b1)) >>> 0);
    while (Date.now() < deadline) classify(await runStream(url, next++, c, planRequest(rng)));
  };
  // RSS and device memory after the warm-up (pipelines compiled, recordings made) and at half time.
  let rssWarm = NaN, rssHalf = NaN, devWarm = NaN, devHalf = NaN;
  const devMiB = (b) => (b / 1048576).toFixed(1);
  const warmTimer = setTimeout(async () => { rssWarm = rssKiB(); devWarm = (await readMetrics(url)).deviceReserved; },
    Math.min(15000, opts.duration * 250));
  const halfTimer = setTimeout(async () => { rssHalf = rssKiB(); devHalf = (await readMetrics(url)).deviceReserved; },
    opts.duration * 500);
  const progress = setInterval(async () => {
    const now = await readMetrics(url);
    const dev = now.deviceReserved;
    console.log(`soak: [${((Date.now() - t0) / 1000).toFixed(0)} s] ${stats.streams} streams, ${stats.dropped} dropped, ` +
      `${stats.lost.length} lost, ${stats.errors.length} errors, RSS ${(rssKiB() / 1024).toFixed(1)} MiB, ` +
      `device memory ${devMiB(dev)} MiB, ${now.recordings} steps recorded`);
  }, 10000);
  // Streams still open 120 s after the end are hung: count them lost rather than wait forever.
  const watchdog = setTimeout(() => [...active].forEach((abort) => abort()), opts.duration * 1000 + 120000);
  await Promise.all(Array.from({ length: opts.clients }, (_, c) => clientLoop(c)));
  clearInterval(progress);
  clearTimeout(watchdog);
  clearTimeout(warmTimer);
  clearTimeout(halfTimer);
  const seconds = (Date.now() - t0) / 1000;

  // Wait for the server to be idle and its 499 count to settle (a dropped connection may still be
  // in its accept queue or finishing when the last client returns).
  const expected499 = stats.dropped;
  const tolerance = stats.dropAfterFinish;
  let m = await readMetrics(url);
  let idle = false;
  {
    const until = Date.now() + 30000;
    let last = null, since = Date.now();
    for (;;) {
      idle = isIdle(m);
      if (idle) {
        if (m.n499 !== last) { last = m.n499; since = Date.now(); }
        if (m.n499 === expected499 || Date.now() - since >= 1000) break;
      } else {
        last = null;
      }
      if (Date.now() > until) break;
      await sleep(100);
      m = await readMetrics(url);
    }
  }
  const server499 = m.n499;
  const rssEnd = rssKiB();
  const devEnd = m.deviceReserved;
  const errorLines = serverLog.filter((l) => l.startsWith('[vkllm error]'));

  proc.kill('SIGTERM');
  const exit = await Promise.race([exited, sleep(20000).then(() => null)]);
  if (!exit) proc.kill('SIGKILL');

  const lost = stats.lost.length, errors = stats.errors.length;
  console.log(`soak: ${stats.streams} streams (${stats.completed} completed, ${stats.dropped} dropped deliberately), ` +
    `${lost} lost, ${errors} errors, server 499s: ${server499}, ${(stats.streams / seconds).toFixed(1)} streams/s, ${seconds.toFixed(1)} s`);
  console.log(`soak: ${stats.whole} non-streamed responses, ${stats.bad} bad requests answered 400, ` +
    `${stats.ids.size} distinct response ids; RSS ${(rssWarm / 1024).toFixed(1)} MiB after the warm-up, ` +
    `${(rssHalf / 1024).toFixed(1)} MiB at half time, ${(rssEnd / 1024).toFixed(1)} MiB at the end ` +
    `(${(100 * (rssEnd / rssWarm - 1)).toFixed(1)}% over the warm-up); device memory ${devMiB(devWarm)} MiB ` +
    `after the warm-up, ${devMiB(devHalf)} MiB at half time, ${devMiB(devEnd)} MiB at the end`);
  console.log(`soak: 499s expected ${expected499}, tolerance ${tolerance} (drops after the finish_reason event), ` +
    `server ${server499}; ${stats.plannedDropsCompleted} planned drops completed first and were checked as normal streams`);

  const checks = [
    ['zero lost streams', lost === 0, `${lost} lost`],
    ['zero errors', errors === 0, `${errors} errors`],
    ['server 499 count matches the deliberate drops', expected499 - tolerance <= server499 && server499 <= expected499,
      `server ${server499}, expected ${expected499 - tolerance}..${expected499}`],
    ['server idle at the end', idle,
      `running ${m.running}, waiting ${m.waiting}, gpu_cache_usage_perc ${m.cache}${m.ok ? '' : ', /metrics failed'}`],
    ...(opts.maxRssGrowth === undefined ? [] : [
      [`RSS at the end within ${opts.maxRssGrowth}% of after the warm-up`,
        rssEnd <= rssWarm * (1 + opts.maxRssGrowth / 100), `${rssWarm} KiB after the warm-up, ${rssEnd} KiB at the end`],
      [`device memory at the end within ${opts.maxRssGrowth}% of after the warm-up`,
        devEnd <= devWarm * (1 + opts.maxRssGrowth / 100), `${devWarm} bytes after the warm-up, ${devEnd} at the end`]]),
    ['no error in the server log', errorLines.length === 0, errorLines.slice(0, 3).join(' | ')],
    ['clean exit 0 on SIGTERM', exit !== null && exit.code === 0 && exit.signal === null,
      exit ? `code ${exit.code}, signal ${exit.signal}` : 'still running after 20 s (killed)'],
  ];
  let failed = 0;
  for (const [name, ok, detail] of checks) {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: ${detail}`}`);
    if (!ok) failed++;
  }
  if (failed) {
    if (lost) {
      console.log(`--- first ${Math.min(10, lost)} of ${lost} lost streams ---`);
      stats.lost.slice(0, 10).forEach((r) => console.log(JSON.stringify(r)));
    }
    if (errors) {
      console.log(`--- first ${Math.min(10, errors)} of ${errors} errors ---`);
      stats.errors.slice(0, 10).forEach((r) => console.log(JSON.stringify(r)));
    }
    console.log(`--- server stderr (last 60 lines) ---\n${logTail(60)}`);
    console.log(`soak: rerun with --seed ${opts.seed}`);
  }
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`soak: ${e.stack || e}`);
  console.log(`--- server stderr (last 60 lines) ---\n${logTail(60)}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
