// Integration tests of `celer serve` driven by the official `openai` npm package (and `ws`):
// real servers on loopback, real models (stories260K, plus a synthetic tiny Qwen2 for FIM and
// long generations). Run with
//   CELER=build/celer CELER_SHARED=../shared node --test tests/server/openai.test.mjs
// (ctest passes both; without them the paths of a local build are used).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import WebSocket from 'ws';

import { STORIES, client, metrics, modelId, parseMetrics, raw, startServer, stopAll, synthQwen, tempDir, waitMetrics, watchdog } from './harness.mjs';

watchdog(90); // the whole file; each test has its own, shorter timeout too
const T = { timeout: 20_000 };

const model = modelId(STORIES);
const storyChat = [{ role: 'user', content: 'Tell me a story.' }];

// Every chunk of an SDK stream.
async function collect(stream) {
  const out = [];
  for await (const x of stream) out.push(x);
  return out;
}

// Runs `fn`, which must throw an SDK APIError of class `cls` with HTTP status `status` (and
// pass `check`, if given).
async function rejectsWith(fn, cls, status, check = () => {}) {
  await assert.rejects(fn, (e) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, status);
    check(e);
    return true;
  });
}

// ---- the shared stories260K server ---------------------------------------------------------

let S; // stories260K, in-memory store, 4 slots of 128 tokens
let ai;
before(async () => {
  S = await startServer();
  ai = client(S);
});
after(async () => {
  const r = await S?.stop();
  await stopAll(); // whatever a failed test left running
  assert.deepEqual(r, { code: 0, signal: null }, 'the server exits 0 on SIGTERM');
});

// ---- 1. Chat Completions ---------------------------------------------------------------------

describe('chat completions', () => {
  // Streaming: a role chunk, content chunks, one finish_reason ('length' at max_tokens) and a
  // final usage chunk (choices []) whose completion_tokens is max_tokens.
  test('streaming with include_usage', T, async () => {
    const chunks = await collect(
      await ai.chat.completions.create({
        model,
        messages: storyChat,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 8,
        temperature: 0,
      }),
    );
    assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, chunks[0].id);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const withChoice = chunks.filter((c) => c.choices.length > 0);
    const content = withChoice.map((c) => c.choices[0].delta.content ?? '').join('');
    assert.ok(content.length > 0, 'no content streamed');
    const finishes = withChoice.map((c) => c.choices[0].finish_reason);
    assert.equal(finishes.at(-1), 'length');
    assert.ok(finishes.slice(0, -1).every((f) => f === null), 'finish_reason only on the last choice chunk');
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 8);
    assert.ok(last.usage.prompt_tokens > 0);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 8);

    // The same request without streaming gives the same greedy text.
    const whole = await ai.chat.completions.create({ model, messages: storyChat, max_tokens: 8, temperature: 0 });
    assert.equal(whole.choices[0].message.content, content);
    assert.equal(whole.choices[0].finish_reason, 'length');
  });

  // Same request, same seed: same text, greedy and sampled alike.
  test('deterministic with temperature 0 / a seed', T, async () => {
    for (const temperature of [0, 1]) {
      const ask = () => ai.chat.completions.create({ model, messages: storyChat, max_tokens: 24, temperature, seed: 1234 });
      const [a, b] = [await ask(), await ask()];
      assert.equal(a.object, 'chat.completion');
      assert.ok(a.choices[0].message.content.length > 0);
      assert.equal(b.choices[0].message.content, a.choices[0].message.content, `temperature ${temperature}`);
      assert.equal(b.usage.completion_tokens, a.usage.completion_tokens);
    }
  });

  // Predicted Outputs: the prediction seeds speculative decoding (on by default); the answer is
  // unchanged and usage counts the guessed tokens taken and refused.
  // (--draft-fixed: guesses as long as the match, whatever the measured costs say, so that the
  // counts do not depend on timing.)
  test('prediction: same text, accepted prediction tokens counted', T, async () => {
    const P = await startServer({ args: ['--draft-fixed'] });
    const ap = client(P);
    const ask = (extra) => ap.chat.completions.create({ model, messages: storyChat, max_tokens: 40, temperature: 0, ...extra });
    const plain = await ask({});
    const text = plain.choices[0].message.content;
    const predicted = await ask({ prediction: { type: 'content', content: text } });
    assert.equal(predicted.choices[0].message.content, text);
    const d = predicted.usage.completion_tokens_details;
    assert.ok(d.accepted_prediction_tokens > 20, JSON.stringify(predicted.usage));
    assert.equal(typeof d.rejected_prediction_tokens, 'number');
    await rejectsWith(() => ask({ prediction: { type: 'content' } }), OpenAI.BadRequestError, 400);
    assert.deepEqual(await P.stop(), { code: 0, signal: null });
  });

  // Requests running side by side (continuous batching) give what each gives alone.
  test('parallel requests match sequential ones', T, async () => {
    const ask = (content) =>
      ai.chat.completions.create({ model, messages: [{ role: 'user', content }], max_tokens: 16, temperature: 0 });
    const prompts = ['Tell me a story.', 'Tom had a dog.', 'The sun was hot.', 'Lily saw a bird.'];
    const alone = [];
    for (const p of prompts) alone.push((await ask(p)).choices[0].message.content);
    const together = await Promise.all(prompts.map(ask));
    assert.deepEqual(
      together.map((r) => r.choices[0].message.content),
      alone,
    );
  });

  // logprobs: one entry per generated token, each with top_logprobs alternatives; greedy picks
  // the most likely one.
  test('logprobs with top_logprobs 2', T, async () => {
    const r = await ai.chat.completions.create({
      model,
      messages: storyChat,
      max_tokens: 6,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, r.usage.completion_tokens);
    assert.equal(lp.length, 6);
    for (const t of lp) {
      assert.equal(t.top_logprobs.length, 2);
      assert.ok(t.logprob <= 0);
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
      assert.equal(t.token, t.top_logprobs[0].token, 'greedy chose the top token');
      assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-5);
    }
    assert.equal(lp.map((t) => t.token).join(''), r.choices[0].message.content);
  });
});

// ---- 1b. Streaming with logprobs ----
// A regression test: g++ 12 once destroyed the temporary of a ?: inside a co_await twice, so
// that every streamed request with logprobs killed the server.
describe('streaming with logprobs', () => {
  test('chat and completions stream their logprobs', T, async () => {
    const chunks = await collect(
      await ai.chat.completions.create({
        model,
        messages: storyChat,
        stream: true,
        max_tokens: 6,
        temperature: 0,
        logprobs: true,
        top_logprobs: 2,
      }),
    );
    const lp = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    assert.equal(lp.length, 6);
    for (const t of lp) assert.equal(t.top_logprobs.length, 2);
    assert.equal(lp.map((t) => t.token).join(''), chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''));

    const cchunks = await collect(
      await ai.completions.create({ model, prompt: 'Once upon a time', stream: true, max_tokens: 6, temperature: 0, logprobs: 2 }),
    );
    const tokens = cchunks.flatMap((c) => c.choices[0]?.logprobs?.tokens ?? []);
    assert.equal(tokens.length, 6);
    assert.equal(tokens.join(''), cchunks.map((c) => c.choices[0]?.text ?? '').join(''));
    assert.equal((await raw(S, 'GET', '/health')).status, 200, 'the server is still up');
  });
});

// ---- 2. Stop sequences ---------------------------------------------------------------------

describe('stop sequences', () => {
  // Generate greedily, pick a word from the middle, ask again with it as the stop sequence: the
  // text is exactly what came before it, finish_reason 'stop' — with and without streaming.
  test('text ends right before the stop string', T, async () => {
    const ask = (extra) => ai.completions.create({ model, prompt: 'Once upon a time', max_tokens: 40, temperature: 0, ...extra });
    const base = await ask();
    const text = base.choices[0].text;
    assert.equal(base.object, 'text_completion');
    assert.equal(base.choices[0].finish_reason, 'length');
    const words = [...text.matchAll(/[A-Za-z]{3,}/g)].map((m) => m[0]);
    assert.ok(words.length >= 4, `too little text: ${JSON.stringify(text)}`);
    const stop = words[Math.floor(words.length / 2)];
    const expected = text.slice(0, text.indexOf(stop));
    assert.ok(expected.length > 0);

    const r = await ask({ stop });
    assert.equal(r.choices[0].text, expected);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens < base.usage.completion_tokens);

    const r2 = await ask({ stop: ['no such text', stop] });
    assert.equal(r2.choices[0].text, expected);
    assert.equal(r2.choices[0].finish_reason, 'stop');

    // Streaming: nothing of the stop string leaks out, even in part.
    const chunks = await collect(await ask({ stop, stream: true }));
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), expected);
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  });
});

describe('context limits', () => {
  // stories260K's slots hold 128 tokens: a larger max_tokens ends with 'length' when the
  // context is full; a prompt that does not fit is a 400.
  test('max_tokens beyond the context, prompt beyond the context', T, async () => {
    const r = await ai.completions.create({ model, prompt: 'Once upon a time', max_tokens: 1000, temperature: 0 });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.prompt_tokens + r.usage.completion_tokens, 128);
    await rejectsWith(() => ai.completions.create({ model, prompt: 'word '.repeat(300), max_tokens: 4 }), OpenAI.BadRequestError, 400);
  });
});

// ---- 3. Completions with suffix (fill-in-the-middle) ------------------------------------------

describe('fill-in-the-middle and long generations (synthetic Qwen2)', () => {
  let Q; // tiny-qwen2: one slot of 4096 tokens
  let qa;
  before(async () => {
    Q = await startServer({ model: synthQwen(), args: ['-np', '1', '-c', '4096'] });
    qa = client(Q);
  });
  after(async () => {
    assert.deepEqual(await Q?.stop(), { code: 0, signal: null });
  });

  // A model with FIM tokens: 200, a text_completion; the prompt holds prefix, suffix and the
  // three FIM tokens; greedy FIM is deterministic.
  test('suffix on a model with FIM tokens', T, async () => {
    const body = { model: 'tq.gguf', prompt: 'def add(a, b):\n    ', suffix: '\n    return c\n', max_tokens: 6, temperature: 0 };
    const r = await qa.completions.create(body);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 6);
    // The prompt is the prefix, the suffix and the three FIM tokens.
    const plain = async (prompt) => (await qa.completions.create({ model: 'tq.gguf', prompt, max_tokens: 1, temperature: 0 })).usage.prompt_tokens;
    assert.equal(r.usage.prompt_tokens, (await plain(body.prompt)) + (await plain(body.suffix)) + 3);
    const again = await qa.completions.create(body);
    assert.equal(again.choices[0].text, r.choices[0].text);
    assert.equal(again.usage.completion_tokens, r.usage.completion_tokens);
  });

  // stories260K has no FIM tokens: a 400 that names the problem.
  test('suffix on a model without FIM tokens is a 400', T, async () => {
    await rejectsWith(() => ai.completions.create({ model, prompt: 'Once', suffix: 'end.', max_tokens: 4 }), OpenAI.BadRequestError, 400, (e) => {
      assert.match(e.message, /fill-in-the-middle|suffix/);
      assert.equal(e.param, 'suffix');
      assert.equal(e.type, 'invalid_request_error');
    });
  });

  // ---- 8. Client disconnect ----
  // A long streaming generation whose client aborts after the first content chunk is
  // cancelled: the slot frees within 5 s and the cancel/disconnect counters move. (The random
  // model is most unlikely to sample its end token: only the cancel can end this early.)
  test('aborting a stream cancels the generation', T, async () => {
    const m0 = await metrics(Q);
    const ac = new AbortController();
    const stream = await qa.chat.completions.create(
      { model: 'tq.gguf', messages: storyChat, stream: true, max_tokens: 2000, temperature: 1, seed: 1 },
      { signal: ac.signal },
    );
    let got = 0;
    try {
      for await (const c of stream) {
        if (c.choices[0]?.delta?.content) {
          got++;
          ac.abort();
        }
      }
    } catch (e) {
      // The SDK either ends the iteration quietly or throws its abort error.
      assert.ok(e instanceof OpenAI.APIUserAbortError, `unexpected ${e}`);
    }
    assert.equal(got, 1);
    const key = 'celer_generations_cancelled_total';
    const m1 = await waitMetrics(Q, (m) => m.get('celer_generations_running') === 0 && m.get(key) > m0.get(key));
    assert.equal(m1.get('celer_generations_running'), 0, 'the generation still runs 5 s after the client left');
    assert.equal(m1.get(key), m0.get(key) + 1);
    assert.equal(m1.get('celer_disconnects_total'), m0.get('celer_disconnects_total') + 1);
    assert.ok(m1.get('celer_generated_tokens_total') - m0.get('celer_generated_tokens_total') < 1000, 'it ran on long after the abort');
    // The slot is free for the next request.
    const r = await qa.completions.create({ model: 'tq.gguf', prompt: 'hello', max_tokens: 2 });
    assert.equal(r.usage.completion_tokens, 2);
  });

  // A request that is not streamed writes nothing until it ends: its client going away is seen
  // by the server watching the socket, and the generation is cancelled at once all the same.
  test('aborting a request that is not streamed cancels it too', T, async () => {
    const m0 = await metrics(Q);
    const ac = new AbortController();
    const pending = qa.chat.completions.create(
      { model: 'tq.gguf', messages: storyChat, max_tokens: 3000, temperature: 1, seed: 2 },
      { signal: ac.signal },
    );
    await waitMetrics(Q, (m) => m.get('celer_generations_running') === 1);
    ac.abort();
    await assert.rejects(pending, OpenAI.APIUserAbortError);
    const key = 'celer_generations_cancelled_total';
    const gone = 'celer_disconnects_total';
    const m1 = await waitMetrics(Q, (m) => m.get('celer_generations_running') === 0 && m.get(key) > m0.get(key) && m.get(gone) > m0.get(gone));
    assert.equal(m1.get('celer_generations_running'), 0, 'the generation still runs 5 s after the client left');
    assert.equal(m1.get(key), m0.get(key) + 1);
    assert.ok(m1.get(gone) > m0.get(gone), 'the disconnect was not seen');
  });
});

// ---- 8b. A slow reader ----
// A client that stops reading its stream must not stall anyone else: the server keeps
// generating into that connection's buffer while another client's request is served.
describe('a slow reader', () => {
  let S2;
  before(async () => {
    S2 = await startServer({ model: synthQwen(), args: ['-np', '2', '-c', '4096'] });
  });
  after(async () => {
    assert.deepEqual(await S2?.stop(), { code: 0, signal: null });
  });

  test('does not stall another client', T, async () => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'go' }], stream: true, max_tokens: 3000, temperature: 1, seed: 3 });
    const sock = net.connect(S2.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    sock.pause(); // never read: the kernel's buffers fill, the server's writes to it wait
    // It has produced far more than a socket buffer holds before the other request starts.
    const m = await waitMetrics(S2, (x) => x.get('celer_generated_tokens_total') > 1000, 10_000);
    assert.ok(m.get('celer_generated_tokens_total') > 1000);
    const t0 = Date.now();
    const r = await client(S2).chat.completions.create({ model: 'tq.gguf', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });
    assert.equal(r.usage.completion_tokens, 8);
    assert.ok(Date.now() - t0 < 10_000, 'the second client waited on the first');
    sock.destroy();
  });
});

// ---- 4. Responses over SSE -----------------------------------------------------------------

describe('responses', () => {
  // Streamed events: created, in_progress, text deltas, then completed/incomplete with usage;
  // sequence_number strictly increasing; the deltas add up to the final text.
  test('streaming events', T, async () => {
    const events = await collect(
      await ai.responses.create({ model, input: 'Tell me a story.', stream: true, max_output_tokens: 8, temperature: 0 }),
    );
    assert.equal(events[0].type, 'response.created');
    assert.equal(events[1].type, 'response.in_progress');
    assert.equal(events[0].response.status, 'in_progress');
    for (let i = 1; i < events.length; i++) assert.ok(events[i].sequence_number > events[i - 1].sequence_number, `sequence_number at ${i}`);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    assert.ok(deltas.length > 0);
    const text = deltas.map((e) => e.delta).join('');
    assert.equal(events.find((e) => e.type === 'response.output_text.done').text, text);
    const last = events.at(-1);
    assert.ok(['response.completed', 'response.incomplete'].includes(last.type), last.type);
    assert.equal(last.type, 'response.incomplete', 'max_output_tokens reached');
    assert.equal(last.response.incomplete_details.reason, 'max_output_tokens');
    assert.equal(last.response.id, events[0].response.id);
    assert.equal(last.response.usage.output_tokens, 8);
    assert.ok(last.response.usage.input_tokens > 0);
    assert.equal(last.response.output[0].content[0].text, text);
  });

  // Non-streaming: a response whose first output item is a message; stored by default and
  // retrievable; store:false is not.
  test('create, retrieve, store:false', T, async () => {
    const r = await ai.responses.create({ model, input: 'Tell me a story.', max_output_tokens: 8, temperature: 0 });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.equal(r.output[0].type, 'message');
    assert.equal(r.output[0].role, 'assistant');
    assert.equal(r.output[0].content[0].type, 'output_text');
    assert.ok(r.output_text.length > 0);
    assert.equal(r.store, true);

    const got = await ai.responses.retrieve(r.id);
    assert.equal(got.id, r.id);
    assert.equal(got.output_text, r.output_text);
    assert.deepEqual(got.usage, r.usage);

    const ephemeral = await ai.responses.create({ model, input: 'Tell me a story.', max_output_tokens: 4, store: false });
    assert.equal(ephemeral.store, false);
    await rejectsWith(() => ai.responses.retrieve(ephemeral.id), OpenAI.NotFoundError, 404);

    // A finished response cannot be cancelled; deleted, it is gone.
    await rejectsWith(() => ai.responses.cancel(r.id), OpenAI.BadRequestError, 400);
    await rejectsWith(() => ai.responses.cancel('resp_never_was'), OpenAI.NotFoundError, 404);
    await ai.responses.delete(r.id);
    await rejectsWith(() => ai.responses.retrieve(r.id), OpenAI.NotFoundError, 404);
    await rejectsWith(() => ai.responses.delete(r.id), OpenAI.NotFoundError, 404);
  });

  // ---- 5. previous_response_id ----
  // Turn 2 continues turn 1: its prompt holds turn 1 (more input tokens) and reuses turn 1's
  // KV cache (cached_tokens covers at least turn 1's prompt, not just BOS).
  test('previous_response_id reuses the prefix', T, async () => {
    const t1 = await ai.responses.create({ model, input: 'Tell me a story about a cat.', max_output_tokens: 8, temperature: 0 });
    const t2 = await ai.responses.create({
      model,
      input: 'And then?',
      previous_response_id: t1.id,
      max_output_tokens: 8,
      temperature: 0,
    });
    assert.equal(t2.previous_response_id, t1.id);
    assert.ok(t2.usage.input_tokens > t1.usage.input_tokens + t1.usage.output_tokens - 2, 'turn 2 holds turn 1');
    assert.ok(t2.usage.input_tokens_details.cached_tokens > 0);
    assert.ok(
      t2.usage.input_tokens_details.cached_tokens >= t1.usage.input_tokens,
      `cached ${t2.usage.input_tokens_details.cached_tokens} < turn 1's ${t1.usage.input_tokens}`,
    );
  });

  test('unknown previous_response_id is a 404', T, async () => {
    await rejectsWith(
      () => ai.responses.create({ model, input: 'Hi', previous_response_id: 'resp_doesnotexist000000000000', max_output_tokens: 2 }),
      OpenAI.NotFoundError,
      404,
    );
  });

  // The store is a file: a new server on it continues an old server's conversation.
  test('previous_response_id across a restart', { timeout: 30_000 }, async () => {
    const store = path.join(tempDir(), 'responses.sqlite');
    const a = await startServer({ store });
    let first;
    try {
      first = await client(a).responses.create({ model, input: 'Tell me a story.', max_output_tokens: 8, temperature: 0 });
    } finally {
      assert.deepEqual(await a.stop(), { code: 0, signal: null });
    }
    assert.ok(fs.existsSync(store));

    const b = await startServer({ store });
    try {
      const cb = client(b);
      const next = await cb.responses.create({ model, input: 'And then?', previous_response_id: first.id, max_output_tokens: 4 });
      assert.equal(next.previous_response_id, first.id);
      assert.ok(next.usage.input_tokens > first.usage.input_tokens, 'the restored context is in the prompt');
      const again = await cb.responses.retrieve(first.id);
      assert.equal(again.id, first.id);
      assert.equal(again.output_text, first.output_text);
    } finally {
      assert.deepEqual(await b.stop(), { code: 0, signal: null });
    }
  });
});

// ---- 6. Responses over WebSocket -----------------------------------------------------------

// Sends with `send()` and collects events until a terminal one (or an 'error' event).
function wsTurn(rws, send, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const events = [];
    const terminal = new Set(['response.completed', 'response.incomplete', 'response.failed', 'error']);
    const done = () => {
      clearTimeout(timer);
      rws.off('event', onEvent);
      rws.off('close', onClose);
    };
    const onEvent = (e) => {
      events.push(e);
      if (terminal.has(e.type)) {
        done();
        resolve(events);
      }
    };
    const onClose = (code, reason) => {
      done();
      reject(new Error(`socket closed (${code} ${reason}) after ${events.map((e) => e.type)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no terminal event in ${ms} ms; got ${events.map((e) => e.type)}`));
    }, ms);
    rws.on('event', onEvent);
    rws.on('close', onClose);
    send();
  });
}

describe('responses over WebSocket (ResponsesWS)', () => {
  let rws;
  const errors = []; // the SDK reports error events here as well
  before(() => {
    rws = new ResponsesWS(ai);
    rws.on('error', (e) => errors.push(e));
  });
  after(() => rws?.close());

  const create = (body) => wsTurn(rws, () => rws.send({ type: 'response.create', model, max_output_tokens: 8, ...body }));

  // Two turns on one socket, both store:false: the second continues the first from the
  // connection's own memory and reuses its cache; neither reaches the store.
  test('two turns with previous_response_id and store:false', T, async () => {
    const e1 = await create({ input: 'Tell me a story.', store: false, temperature: 0 });
    assert.equal(e1[0].type, 'response.created');
    assert.ok(e1.some((e) => e.type === 'response.output_text.delta'));
    for (let i = 1; i < e1.length; i++) assert.ok(e1[i].sequence_number > e1[i - 1].sequence_number);
    const r1 = e1.at(-1).response;
    assert.ok(['response.completed', 'response.incomplete'].includes(e1.at(-1).type));
    assert.equal(r1.store, false);

    const e2 = await create({ input: 'And then?', store: false, previous_response_id: r1.id, temperature: 0 });
    const r2 = e2.at(-1).response;
    assert.ok(['response.completed', 'response.incomplete'].includes(e2.at(-1).type), e2.at(-1).type);
    assert.equal(r2.previous_response_id, r1.id);
    assert.ok(r2.usage.input_tokens > r1.usage.input_tokens);
    assert.ok(r2.usage.input_tokens_details.cached_tokens >= r1.usage.input_tokens, JSON.stringify(r2.usage));

    // Connection-local: not in the store, not visible over HTTP.
    await rejectsWith(() => ai.responses.retrieve(r1.id), OpenAI.NotFoundError, 404);
    await rejectsWith(
      () => ai.responses.create({ model, input: 'x', previous_response_id: r1.id, max_output_tokens: 1 }),
      OpenAI.NotFoundError,
      404,
    );
    // With store left at its default, a WebSocket response is in the shared store.
    const e3 = await create({ input: 'Tell me a story.', max_output_tokens: 2 });
    assert.equal((await ai.responses.retrieve(e3.at(-1).response.id)).id, e3.at(-1).response.id);
    assert.deepEqual(errors, []);
  });

  // Bad JSON and an unknown event type each give an 'error' event; the socket stays usable.
  test('malformed messages give error events, the socket survives', T, async () => {
    const bad = await wsTurn(rws, () => rws.sendRaw('{bad json'));
    assert.equal(bad.length, 1);
    assert.equal(bad[0].type, 'error');
    assert.equal(bad[0].status, 400);
    assert.equal(typeof bad[0].error.message, 'string');

    const unknown = await wsTurn(rws, () => rws.sendRaw(JSON.stringify({ type: 'response.bogus' })));
    assert.equal(unknown[0].type, 'error');
    assert.match(unknown[0].message, /response\.bogus/);

    const noInput = await wsTurn(rws, () => rws.send({ type: 'response.create', model }));
    assert.equal(noInput[0].type, 'error');
    assert.equal(noInput[0].param, 'input');
    assert.equal(errors.length, 3, 'the SDK surfaced each error event');

    const ok = await create({ input: 'Tell me a story.', max_output_tokens: 4 });
    assert.ok(['response.completed', 'response.incomplete'].includes(ok.at(-1).type));
    assert.equal(ok.at(-1).response.usage.output_tokens, 4);
  });
});

// ---- 7. Errors, API key, body limit --------------------------------------------------------

describe('errors', () => {
  // Malformed JSON, a missing field and an unknown route: OpenAI-shaped error bodies.
  test('malformed JSON, missing messages, unknown route', T, async () => {
    const r = await raw(S, 'POST', '/v1/chat/completions', { body: '{"messages": [' });
    assert.equal(r.status, 400);
    assert.equal(typeof r.json.error.message, 'string');
    assert.equal(r.json.error.type, 'invalid_request_error');

    const m = await raw(S, 'POST', '/v1/chat/completions', { body: JSON.stringify({ model, max_tokens: 2 }) });
    assert.equal(m.status, 400);
    assert.equal(m.json.error.param, 'messages');
    await rejectsWith(() => ai.chat.completions.create({ model, messages: [] }), OpenAI.BadRequestError, 400);

    const u = await raw(S, 'GET', '/v1/nope');
    assert.equal(u.status, 404);
    assert.equal(typeof u.json.error.message, 'string');
    assert.equal(typeof u.json.error.type, 'string');
    await rejectsWith(() => ai.get('/no/such/route'), OpenAI.NotFoundError, 404);
  });

  describe('with --api-key and --max-body', () => {
    let K;
    before(async () => {
      K = await startServer({ args: ['--api-key', 'secret', '--max-body', '2048'] });
    });
    after(async () => {
      assert.deepEqual(await K?.stop(), { code: 0, signal: null });
    });

    // Wrong or missing key: 401; the right key works; /health needs none.
    test('API key', T, async () => {
      await rejectsWith(() => client(K, { apiKey: 'wrong' }).models.list(), OpenAI.AuthenticationError, 401);
      await rejectsWith(
        () => client(K, { apiKey: 'wrong' }).chat.completions.create({ model, messages: storyChat, max_tokens: 2 }),
        OpenAI.AuthenticationError,
        401,
      );
      assert.equal((await raw(K, 'GET', '/v1/models')).status, 401);
      assert.equal((await raw(K, 'GET', '/metrics')).status, 401);
      assert.equal((await raw(K, 'GET', '/health')).status, 200);

      const good = client(K, { apiKey: 'secret' });
      const list = await good.models.list();
      assert.equal(list.data[0].id, model);
      const r = await good.chat.completions.create({ model, messages: storyChat, max_tokens: 2 });
      assert.equal(r.usage.completion_tokens, 2);

      // The WebSocket upgrade checks the key too.
      const status = await new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${K.port}/v1/responses`, { headers: { Authorization: 'Bearer wrong' } });
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode);
          ws.terminate();
        });
        ws.on('open', () => reject(new Error('upgraded without the key')));
        ws.on('error', () => {});
      });
      assert.equal(status, 401);
    });

    // A body over --max-body is a 413, and the server carries on.
    test('body over the limit is a 413', T, async () => {
      const good = client(K, { apiKey: 'secret' });
      await rejectsWith(
        () => good.completions.create({ model, prompt: 'word '.repeat(2000), max_tokens: 2 }),
        OpenAI.APIError,
        413,
      );
      assert.equal((await raw(K, 'GET', '/health')).status, 200);
      const r = await good.completions.create({ model, prompt: 'Once upon a time', max_tokens: 2 });
      assert.equal(r.usage.completion_tokens, 2);
    });
  });
});

// ---- 9. /metrics ---------------------------------------------------------------------------

describe('metrics', () => {
  // Prometheus text exposition: the expected families, well-formed lines, sane histograms.
  test('Prometheus text', T, async () => {
    await ai.chat.completions.create({ model, messages: storyChat, max_tokens: 2 });
    const r = await raw(S, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    for (const name of ['celer_requests_total', 'celer_time_to_first_token_seconds_bucket', 'celer_kv_bytes_used'])
      assert.ok(r.text.includes(name), `no ${name}`);
    for (const line of r.text.split('\n').filter((l) => l && !l.startsWith('#')))
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|Inf|NaN)$/);

    const m = parseMetrics(r.text);
    assert.ok(m.get('celer_requests_total{route="/chat/completions",status="200"}') >= 1);
    assert.ok(m.get('celer_kv_bytes_used') > 0 && m.get('celer_kv_bytes_used') <= m.get('celer_kv_bytes_total'));
    const buckets = [...m].filter(([k]) => k.startsWith('celer_time_to_first_token_seconds_bucket')).map(([, v]) => v);
    assert.ok(buckets.length > 2);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i] >= buckets[i - 1], 'cumulative buckets');
    assert.equal(buckets.at(-1), m.get('celer_time_to_first_token_seconds_count'));
    assert.ok(m.get('celer_time_to_first_token_seconds_count') >= 1);
  });

  // The running gauge must fall back to 0 when a generation ends by itself (length or stop).
  test('gauges return to idle', T, async () => {
    await ai.chat.completions.create({ model, messages: storyChat, max_tokens: 2 });
    const m = await waitMetrics(S, (x) => x.get('celer_generations_running') === 0);
    assert.equal(m.get('celer_generations_running'), 0);
    assert.equal(m.get('celer_generations_waiting'), 0);
  });
});
