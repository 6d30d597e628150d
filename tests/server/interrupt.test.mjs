// Interrupting and redirecting responses over the WebSocket (issue 7):
// - {"type": "response.cancel"} stops the running response at once; its last event carries the
//   partial output, and a following response.create naming it as previous_response_id
//   continues from that output with the model's own tokens, their KV reused;
// - response.steer (OpenAI's event) stops it at the next token and continues it with the new
//   input as a successor response, by itself;
// - stream_id lanes run several responses on one socket at once, each lane in order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ResponsesWS } from 'openai/resources/responses/ws';

import { client, modelId, startServer, stopAll, synthQwen, watchdog } from './harness.mjs';

const T = { timeout: 30_000 };
watchdog(120);

const isFinal = (e) => ['response.completed', 'response.incomplete', 'response.failed'].includes(e.type);

// Records every event of an SDK socket; until(pred) waits for the first event that matches.
function recorder(rws) {
  const events = [];
  let wake = () => {};
  rws.on('event', (e) => {
    events.push(e);
    wake();
  });
  rws.on('error', () => {}); // error events arrive as events too
  return {
    events,
    async until(pred, ms = 20_000) {
      const end = Date.now() + ms;
      for (;;) {
        const hit = events.find(pred);
        if (hit) return hit;
        if (Date.now() > end) throw new Error(`timed out; got ${events.map((e) => e.type + (e.stream_id ? '@' + e.stream_id : ''))}`);
        await new Promise((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
    },
  };
}

describe('interrupt over the WebSocket', () => {
  let server, file;
  before(async () => {
    file = synthQwen();
    server = await startServer({ model: file, args: ['-c', '4096'] });
  });
  after(async () => {
    assert.deepEqual(await server?.stop(), { code: 0, signal: null });
    await stopAll();
  });

  // Sends a response.create on the SDK socket; resolves with its events through its final one
  // (or an error event). onEvent sees each as it arrives.
  async function turn(rws, rec, body, onEvent = () => {}) {
    const from = rec.events.length;
    let seen = from;
    rws.send({ type: 'response.create', model: modelId(file), store: false, ...body });
    const end = await rec.until((e) => {
      const i = rec.events.indexOf(e);
      if (i < from) return false;
      while (seen <= i) onEvent(rec.events[seen++]);
      return isFinal(e) || e.type === 'error';
    });
    return rec.events.slice(from, rec.events.indexOf(end) + 1);
  }
  const open = () => {
    const rws = new ResponsesWS(client(server));
    return { rws, rec: recorder(rws) };
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  test('cancel mid-stream, then redirect from the partial output', T, async () => {
    const { rws, rec } = open();
    const input = [{ type: 'message', role: 'user', content: 'Write a long story.' }];
    let deltas = 0;
    const events = await turn(rws, rec, { input, max_output_tokens: 3000, temperature: 1, seed: 4 }, (e) => {
      if (e.type === 'response.output_text.delta' && ++deltas === 3) rws.send({ type: 'response.cancel' });
    });
    const last = events.at(-1);
    assert.equal(last.response.status, 'cancelled', JSON.stringify(last).slice(0, 300));
    const u = last.response.usage;
    assert.ok(u.output_tokens >= 3 && u.output_tokens < 1000, `stopped at once, not after ${u.output_tokens} tokens`);
    assert.equal(last.response.output[0].type, 'message', 'the partial output is kept');

    const redirect = await turn(rws, rec, { previous_response_id: last.response.id, max_output_tokens: 4,
      input: [{ type: 'message', role: 'user', content: 'No: make it a poem instead.' }] });
    const r = redirect.at(-1).response;
    assert.ok(['completed', 'incomplete'].includes(r.status), JSON.stringify(r).slice(0, 300));
    // The prompt and the partial output come from the cache: the redirect continues from the
    // model's own tokens (tokenizing the output's text again need not give them back: this
    // random model writes runs of "\n" that the tokenizer merges). Only the last token generated
    // was never run through the model.
    assert.ok(r.usage.input_tokens_details.cached_tokens >= u.input_tokens + u.output_tokens - 1, JSON.stringify({ r: r.usage, u }));
    rws.close();
  });

  // Defined behaviour: a cancel during prefill ends the response cancelled with whatever output it
  // had (none), and the socket goes on.
  test('a cancel during prefill ends the response cancelled', T, async () => {
    const { rws, rec } = open();
    const long = Array.from({ length: 1200 }, (_, i) => `w${i % 97}`).join(' ');  // about 2,400 tokens: some chunks
    const input = [{ type: 'message', role: 'user', content: long }];
    const events = await turn(rws, rec, { input, max_output_tokens: 2000 }, (e) => {
      if (e.type === 'response.created') rws.send({ type: 'response.cancel' });
    });
    const r = events.at(-1).response;
    assert.equal(r?.status, 'cancelled', JSON.stringify(events.at(-1)).slice(0, 300));
    assert.ok(r.usage.output_tokens < 2000, `stopped early, not after ${r.usage.output_tokens} tokens`);
    const next = await turn(rws, rec, { input: 'hi', max_output_tokens: 2 });
    assert.ok(['completed', 'incomplete'].includes(next.at(-1).response.status));
    rws.close();
  });

  // Defined behaviour: a cancel racing the natural end of a response. Whichever the engine sees
  // first wins: either the response ends cancelled and nothing follows, or it ends as it would
  // have and the late cancel gets an error event (response_not_running). Exactly one final event.
  test('a cancel racing the natural end gives one final event either way', T, async () => {
    const seen = new Set();
    for (let i = 0; i < 8; ++i) {
      const { rws, rec } = open();
      const events = await turn(rws, rec, { input: `hi ${i}`, max_output_tokens: 1 + (i % 3) }, (e) => {
        if (e.type === 'response.created') rws.send({ type: 'response.cancel' });
      });
      const status = events.at(-1).response.status;
      seen.add(status);
      await sleep(300);
      const after = rec.events.slice(events.length);
      assert.equal(rec.events.filter(isFinal).length, 1, JSON.stringify(rec.events.map((e) => e.type)));
      if (status === 'cancelled') {
        assert.equal(after.length, 0, 'nothing follows a cancelled response');
      } else {
        assert.ok(['completed', 'incomplete'].includes(status), status);
        assert.equal(after.length, 1, JSON.stringify(after));
        assert.equal(after[0].type, 'error', 'the late cancel is answered');
        assert.equal(after[0].code, 'response_not_running');
      }
      rws.close();
    }
    assert.ok(seen.size >= 1);
  });

  test('a cancel with nothing running is an error event, and the socket stays usable', T, async () => {
    const { rws, rec } = open();
    rws.send({ type: 'response.cancel', response_id: 'resp_unknown' });
    const err = await rec.until((e) => e.type === 'error');
    assert.equal(err.code, 'response_not_running');
    const next = await turn(rws, rec, { input: 'hi again', max_output_tokens: 2 });
    assert.ok(next.some((e) => e.type === 'response.created'));
    rws.close();
  });

  test('two lanes run at once, each in order, and a lane can fork from another', T, async () => {
    const model = modelId(file);
    const rws = new ResponsesWS(client(server));
    const rec = recorder(rws);
    const long = { type: 'response.create', model, input: 'Write a long story.', max_output_tokens: 3000, temperature: 1, seed: 4, store: false };
    rws.send({ ...long, stream_id: 'a' });
    rws.send({ ...long, stream_id: 'a', input: 'Then a short one.', max_output_tokens: 3 }); // waits behind the first on lane a
    await rec.until((e) => e.stream_id === 'a' && e.type === 'response.output_text.delta');
    rws.send({ type: 'response.create', model, input: 'hi', max_output_tokens: 4, store: false, stream_id: 'b' });
    await rec.until((e) => e.stream_id === 'b' && isFinal(e));
    assert.ok(!rec.events.some((e) => e.stream_id === 'a' && isFinal(e)), 'lane b ended while lane a still ran');
    rws.send({ type: 'response.cancel', stream_id: 'a' });
    await rec.until((e) => e.stream_id === 'a' && isFinal(e) && e.response.usage.output_tokens <= 3);
    const a = rec.events.filter((e) => e.stream_id === 'a');
    const created = a.flatMap((e, i) => (e.type === 'response.created' ? [i] : []));
    assert.equal(created.length, 2);
    const first = a.findIndex(isFinal);
    assert.ok(first < created[1], 'a lane runs its responses one after the other');
    assert.equal(a[first].response.status, 'cancelled');
    assert.ok(rec.events.every((e) => e.stream_id === 'a' || e.stream_id === 'b'), 'every event names its lane');
    // A new lane continues a response of lane a, from the cache.
    const r1 = a[first].response;
    rws.send({ type: 'response.create', model, previous_response_id: r1.id, input: 'Shorter.', max_output_tokens: 2, store: false, stream_id: 'c' });
    const c = await rec.until((e) => e.stream_id === 'c' && isFinal(e));
    assert.equal(c.response.previous_response_id, r1.id);
    assert.ok(c.response.usage.input_tokens_details.cached_tokens >= r1.usage.input_tokens + r1.usage.output_tokens - 1, JSON.stringify(c.response.usage));
    rws.close();
  });

  test('a steer stops the response at the next token and continues it with the new input', T, async () => {
    const model = modelId(file);
    const rws = new ResponsesWS(client(server));
    const rec = recorder(rws);
    rws.send({ type: 'response.create', model, input: 'Write a long story.', max_output_tokens: 3000, temperature: 1, seed: 4, store: false, stream_id: 's' });
    const id = (await rec.until((e) => e.type === 'response.created')).response.id;
    await rec.until(() => rec.events.filter((e) => e.type === 'response.output_text.delta').length >= 3);
    rws.send({ type: 'response.steer', previous_response_id: id, input: 'No: write a poem.' });
    const acc = await rec.until((e) => e.type === 'response.steer.accepted');
    assert.equal(acc.steer.previous_response_id, id);
    assert.match(acc.steer.id, /^steer_/);
    assert.equal(acc.stream_id, 's');
    const end = await rec.until((e) => isFinal(e) && e.response.id === id);
    assert.equal(end.type, 'response.incomplete');
    assert.equal(end.response.incomplete_details?.reason, 'steered');
    const u = end.response.usage;
    assert.ok(u.output_tokens >= 3 && u.output_tokens < 1000, `stopped at once, not after ${u.output_tokens} tokens`);
    // The successor follows by itself, on the same lane, with the earlier settings.
    const next = (await rec.until((e) => (e.type === 'response.created' && e.response.id !== id) || e.type === 'response.steer.failed')).response;
    assert.ok(next, JSON.stringify(rec.events.at(-1)));
    assert.equal(next.previous_response_id, id);
    assert.equal(next.max_output_tokens, 3000);
    // Cancelled once it has prefilled and begun to write (a cancel during its prefill, as on a
    // loaded machine, would leave its cached-token count at 0 and the last check below moot).
    const from = rec.events.findIndex((e) => e.type === 'response.created' && e.response.id === next.id);
    await rec.until((e) => e.type === 'response.output_text.delta' && rec.events.indexOf(e) > from);
    rws.send({ type: 'response.cancel', response_id: next.id });
    const done = await rec.until((e) => isFinal(e) && e.response.id === next.id);
    assert.equal(done.stream_id, 's');
    assert.equal(done.response.status, 'cancelled');
    assert.ok(done.response.usage.input_tokens > u.input_tokens + u.output_tokens, 'the steering input was added');
    assert.ok(done.response.usage.input_tokens_details.cached_tokens >= u.input_tokens + u.output_tokens - 1, JSON.stringify({ done: done.response.usage, u }));

    // Refusals come back as response.steer.failed, and the socket goes on.
    rws.send({ type: 'response.steer', previous_response_id: id, input: 'again' });
    const late = await rec.until((e) => e.type === 'response.steer.failed');
    assert.equal(late.error.code, 'response_already_completed');
    assert.equal(late.steer.input, 'again', 'the input is handed back');
    rws.send({ type: 'response.steer', previous_response_id: 'resp_nope', input: 'x' });
    rws.send({ type: 'response.steer', previous_response_id: next.id, input: [{ role: 'assistant', content: 'x' }] });
    await rec.until(() => rec.events.filter((e) => e.type === 'response.steer.failed').length >= 3);
    const codes = rec.events.filter((e) => e.type === 'response.steer.failed').map((e) => e.error.code);
    assert.deepEqual(codes, ['response_already_completed', 'response_not_found', 'invalid_input']);
    rws.send({ type: 'response.create', model, input: 'hi', max_output_tokens: 2, store: false });
    await rec.until((e) => isFinal(e) && !e.stream_id);
    rws.close();
  });
});
