// Shared-prefix benchmark: N sessions send, at the same moment, a request whose long prefix (a
// system prompt with "files", as agents send) is the same and whose last message differs; each
// asks for one token. Reports each session's time to first token and, for celer, how many
// prompt tokens were computed (/metrics), against llama-server on the same file if given.
//
//   node bench/prefix_sessions.mjs --celer build/celer --model FILE [--llama-server PATH]
//        [--sessions 8] [--prefix-words 1500] [--threads 2] [--ctx 4096]
import { arg, request, startCeler, startLlama, stop } from './server_common.mjs';

const celer = arg('celer', 'build/celer');
const model = arg('model', '');
const llamaServer = arg('llama-server', '');
const sessions = Number(arg('sessions', 8));
const words = Number(arg('prefix-words', 1500));
const threads = arg('threads', '2');
const ctx = arg('ctx', '4096');  // per session

const vocab = ['def', 'return', 'self', 'value', 'for', 'in', 'range', 'if', 'else', 'import', 'os', 'path', 'list', 'dict', '(', ')', ':', '=', 'x', 'y'];
const prefix = Array.from({ length: words }, (_, i) => vocab[(i * 7) % vocab.length] + (i % 12 === 11 ? '\n' : '')).join(' ');

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
  const s = await startCeler(celer, model, ['-t', threads, '-np', String(sessions), '-c', ctx]);
  const r = await run('celer', s.port);
  const m = await request(s.port, '/metrics', null, 'GET');
  const get = (k) => Number(new RegExp(`^${k} ([0-9.e+]+)$`, 'm').exec(m)?.[1]);
  r.prompt_tokens = get('celer_prompt_tokens_total');
  r.prefilled_tokens = get('celer_prefilled_tokens_total');
  r.forked_tokens = get('celer_forked_prefix_tokens_total');
  r.evicted_blocks = get('celer_kv_evicted_blocks_total');
  results.push(r);
  console.error(JSON.stringify(r));  // at once: the peer's run may take a long time
  await stop(s);
}
if (llamaServer) {
  const s = await startLlama(llamaServer, model, 18950, ['-t', threads, '-np', String(sessions), '-c', String(Number(ctx) * sessions)]);
  results.push(await run('llama-server', s.port));
  await stop(s);
}
console.log(JSON.stringify({ model, sessions, prefix_words: words, results }, null, 2));
