// Shared-prefix benchmark: N sessions send, at the same moment, a request whose long prefix (a
// system prompt with "files", as agents send) is the same and whose last message differs; each
// asks for one token. Reports each session's time to first token and, for celer, how many
// prompt tokens were computed (/metrics), against llama-server on the same file if given.
//
//   node bench/prefix_sessions.mjs --celer build/celer --model FILE [--llama-server PATH]
//        [--sessions 8] [--prefix-words 1500] [--threads 2]
import { spawn } from 'node:child_process';
import http from 'node:http';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const celer = arg('celer', 'build/celer');
const model = arg('model', '');
const llamaServer = arg('llama-server', '');
const sessions = Number(arg('sessions', 8));
const words = Number(arg('prefix-words', 1500));
const threads = arg('threads', '2');

const vocab = ['def', 'return', 'self', 'value', 'for', 'in', 'range', 'if', 'else', 'import', 'os', 'path', 'list', 'dict', '(', ')', ':', '=', 'x', 'y'];
const prefix = Array.from({ length: words }, (_, i) => vocab[(i * 7) % vocab.length] + (i % 12 === 11 ? '\n' : '')).join(' ');

function start(cmd, args, ready) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    const on = (d) => {
      log += d;
      const m = ready(log);
      if (m) resolve({ proc: p, port: m });
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (code) => reject(new Error(`${cmd} exited (${code}): ${log.slice(-2000)}`)));
  });
}

function request(port, path, body, method = 'POST') {
  const data = body ? JSON.stringify(body) : '';
  return new Promise((resolve, reject) => {
    const req = http.request({ port, path, method, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
      (res) => {
        let s = '';
        res.on('data', (d) => (s += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(s) : reject(new Error(`${res.statusCode}: ${s}`))));
      });
    req.on('error', reject);
    req.end(data);
  });
}

async function waitHealthy(port) {
  for (;;) {
    try {
      await request(port, '/health', null, 'GET');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function run(name, port) {
  const t0 = performance.now();
  const ttft = await Promise.all(Array.from({ length: sessions }, async (_, i) => {
    const messages = [{ role: 'system', content: prefix }, { role: 'user', content: `Session ${i}: what does this code do?` }];
    await request(port, '/v1/chat/completions', { messages, max_tokens: 1, temperature: 0 });
    return performance.now() - t0;
  }));
  ttft.sort((a, b) => a - b);
  return { name, ttft_ms: { first: ttft[0], median: ttft[Math.floor(ttft.length / 2)], last: ttft.at(-1) } };
}

const results = [];
{
  const s = await start(celer, ['serve', '-m', model, '--port', '0', '--store', 'none', '-t', threads, '-np', String(sessions), '-c', '4096'],
    (log) => Number(/listening on http:\/\/[^:]+:(\d+)/.exec(log)?.[1]) || 0);
  const r = await run('celer', s.port);
  const m = await request(s.port, '/metrics', null, 'GET');
  const get = (k) => Number(new RegExp(`^${k} ([0-9.e+]+)$`, 'm').exec(m)?.[1]);
  r.prompt_tokens = get('celer_prompt_tokens_total');
  r.prefilled_tokens = get('celer_prefilled_tokens_total');
  r.copied_tokens = get('celer_copied_prefix_tokens_total');
  results.push(r);
  s.proc.kill('SIGTERM');
  await new Promise((res) => s.proc.once('exit', res));
}
if (llamaServer) {
  const port = 18950;
  const s = await start(llamaServer, ['-m', model, '--port', String(port), '-t', threads, '-np', String(sessions), '-c', String(4096 * sessions)],
    (log) => (/server is listening|HTTP server listening/.test(log) ? port : 0));
  await waitHealthy(port);
  results.push(await run('llama-server', port));
  s.proc.kill('SIGTERM');
  await new Promise((res) => s.proc.once('exit', res));
}
console.log(JSON.stringify({ model, sessions, prefix_words: words, results }, null, 2));
