// Agent-session benchmark (issue #6): one conversation that starts with a long prompt and grows
// by a chunk of "tool output" every turn, as a coding agent's does; each turn asks for one token.
// Reports each turn's time to first token against what prefilling only the new tokens should
// cost (new tokens / prefill rate + one decode step, rates from `celer bench` on the same file at
// the turn's depth),
// and the tokens computed against a server without reuse, beside llama-server if given.
//
//   node bench/agent_session.mjs --celer build/celer --model FILE [--llama-server PATH]
//        [--turns 20] [--start-words 8000] [--turn-words 500] [--threads 2] [--fit-depth 16384]
import { spawnSync } from 'node:child_process';

import { arg, request, startCeler, startLlama, stop } from './server_common.mjs';

const celer = arg('celer', 'build/celer');
const model = arg('model', '');
const llamaServer = arg('llama-server', '');
const turns = Number(arg('turns', 20));
const startWords = Number(arg('start-words', 8000));
const turnWords = Number(arg('turn-words', 500));
const threads = arg('threads', '2');

const vocab = ['def', 'return', 'self', 'value', 'for', 'in', 'range', 'if', 'else', 'import', 'os', 'path', 'list', 'dict', '(', ')', ':', '=', 'x', 'y'];
let seed = 1;
const text = (n) => Array.from({ length: n }, (_, i) => vocab[(seed = (seed * 1103515245 + 12345) % 2147483648) % vocab.length] + (i % 12 === 11 ? '\n' : '')).join(' ');
const system = text(startWords);
const outputs = Array.from({ length: turns }, (_, i) => `Tool output ${i}:\n${text(turnWords)}`);

async function session(port) {
  const messages = [{ role: 'system', content: system }];
  const out = [];
  for (let i = 0; i < turns; ++i) {
    messages.push({ role: 'user', content: outputs[i] });
    const t0 = performance.now();
    const r = JSON.parse(await request(port, '/v1/chat/completions', { messages, max_tokens: 1, temperature: 0 }));
    out.push({ ms: performance.now() - t0, prompt: r.usage.prompt_tokens, computed: r.timings?.prompt_n });
    messages.push({ role: 'assistant', content: r.choices[0].message.content ?? '' });
  }
  return out;
}

// Rates of this file on this machine, for the expectation: prefill of 512 tokens and decode, at
// depth 0 and at --fit-depth. Attention makes a token's cost grow linearly with the keys before
// it, so a new token at depth d costs t0 + (t1 - t0) * d / d1 (t0, t1 the measured seconds per
// token at depth 0 and d1), and likewise a decode step.
const fitDepth = Number(arg('fit-depth', 16384));
const benchAt = (depth) => JSON.parse(spawnSync(celer, ['bench', '-m', model, '-t', threads, '--prompt', '512', '--gen', '16', '--reps', '1', '--depth', String(depth), '--json'], { encoding: 'utf8' }).stdout);
const b = benchAt(0), bd = benchAt(fitDepth);
const perToken = (rate0, rateD, d1, d) => 1 / rate0 + (1 / rateD - 1 / rate0) * d / d1;
const prefillSeconds = (n, depth) => n * perToken(b.prefill_tok_s, bd.prefill_tok_s, fitDepth + 256, depth + n / 2);
const decodeSeconds = (depth) => perToken(b.decode_tok_s, bd.decode_tok_s, fitDepth + 512, depth);
const result = { model, turns, start_words: startWords, turn_words: turnWords, prefill_tok_s: b.prefill_tok_s, decode_tok_s: b.decode_tok_s,
                 fit_depth: fitDepth, prefill_tok_s_at_fit_depth: bd.prefill_tok_s, decode_tok_s_at_fit_depth: bd.decode_tok_s, servers: {} };

const report = (name, t) => {
  const rows = t.map((x, i) => {
    const fresh = i === 0 ? x.prompt : x.prompt - t[i - 1].prompt;  // tokens the turn added (incl. the reply)
    const expect = (prefillSeconds(fresh, x.prompt - fresh) + decodeSeconds(x.prompt)) * 1e3;
    return { turn: i, prompt: x.prompt, new: fresh, computed: x.computed, ttft_ms: Math.round(x.ms), expected_ms: Math.round(expect), ratio: +(x.ms / expect).toFixed(2) };
  });
  const later = rows.slice(1);
  result.servers[name] = {
    turns: rows,
    median_ttft_ms_turns_1_on: later.map((r) => r.ttft_ms).sort((a, c) => a - c)[Math.floor(later.length / 2)],
    median_ratio_turns_1_on: later.map((r) => r.ratio).sort((a, c) => a - c)[Math.floor(later.length / 2)],
    tokens_in_prompts: rows.reduce((s, r) => s + r.prompt, 0),
    tokens_computed: rows.reduce((s, r) => s + (r.computed ?? 0), 0),
  };
};

{
  const s = await startCeler(celer, model, ['-t', threads, '-np', '1', '-c', '32768']);
  report('celer', await session(s.port));
  await stop(s);
}
if (llamaServer) {
  const s = await startLlama(llamaServer, model, 18960, ['-t', threads, '-np', '1', '-c', '32768']);
  report('llama-server', await session(s.port));
  await stop(s);
}
if (llamaServer) result.median_ttft_llama_over_celer = result.servers['llama-server'].median_ttft_ms_turns_1_on / result.servers.celer.median_ttft_ms_turns_1_on;
console.log(JSON.stringify(result, null, 1));
