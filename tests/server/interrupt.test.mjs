// Interrupting a response over the WebSocket (a first piece of issue 7): a
// {"type": "response.cancel"} message stops the running response at once; its last event
// carries the partial output, and a following response.create naming it as
// previous_response_id continues from that output, its conversation's KV cache reused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { socket, startServer, stopAll, synthQwen, watchdog } from './harness.mjs';

const T = { timeout: 30_000 };
watchdog(90);

describe('interrupt over the WebSocket', () => {
  let server;
  before(async () => {
    server = await startServer({ model: synthQwen(), args: ['-c', '4096'] });
  });
  after(async () => {
    assert.deepEqual(await server?.stop(), { code: 0, signal: null });
    await stopAll();
  });

  test('cancel mid-stream, then redirect from the partial output', T, async () => {
    const s = await socket(server);
    const input = [{ type: 'message', role: 'user', content: 'Write a long story.' }];
    let deltas = 0;
    const events = await s.turn({ type: 'response.create', input, max_output_tokens: 3000, temperature: 1, seed: 4, store: false }, (e) => {
      if (e.type === 'response.output_text.delta' && ++deltas === 3) s.ws.send(JSON.stringify({ type: 'response.cancel' }));
    });
    const last = events.at(-1);
    assert.equal(last.response.status, 'cancelled', JSON.stringify(last).slice(0, 300));
    const u = last.response.usage;
    assert.ok(u.output_tokens >= 3 && u.output_tokens < 1000, `stopped at once, not after ${u.output_tokens} tokens`);
    assert.equal(last.response.output[0].type, 'message', 'the partial output is kept');

    const redirect = await s.turn({ type: 'response.create', previous_response_id: last.response.id, store: false, max_output_tokens: 4,
      input: [{ type: 'message', role: 'user', content: 'No: make it a poem instead.' }] });
    const r = redirect.at(-1).response;
    assert.ok(['completed', 'incomplete'].includes(r.status), JSON.stringify(r).slice(0, 300));
    // The earlier prompt was found in the cache. (The partial output is re-rendered as text and
    // tokenized again, which need not give the tokens the model produced — this random model
    // writes runs of "\n" that the tokenizer merges — so it may be prefilled again: issue 7.)
    assert.ok(r.usage.input_tokens_details.cached_tokens >= u.input_tokens - 3, JSON.stringify(r.usage));
    s.ws.close();
  });

  // Defined behaviour: a cancel during prefill ends the response cancelled with whatever output it
  // had (none), and the socket goes on.
  test('a cancel during prefill ends the response cancelled', T, async () => {
    const s = await socket(server);
    const long = Array.from({ length: 1200 }, (_, i) => `w${i % 97}`).join(' ');  // about 2,400 tokens: some chunks
    const input = [{ type: 'message', role: 'user', content: long }];
    const events = await s.turn({ type: 'response.create', input, max_output_tokens: 2000, store: false }, (e) => {
      if (e.type === 'response.created') s.ws.send(JSON.stringify({ type: 'response.cancel' }));
    });
    const r = events.at(-1).response;
    assert.equal(r?.status, 'cancelled', JSON.stringify(events.at(-1)).slice(0, 300));
    assert.ok(r.usage.output_tokens < 2000, `stopped early, not after ${r.usage.output_tokens} tokens`);
    const next = await s.turn({ type: 'response.create', input: 'hi', max_output_tokens: 2, store: false });
    assert.ok(['completed', 'incomplete'].includes(next.at(-1).response.status));
    s.ws.close();
  });

  // Defined behaviour: a cancel racing the natural end of a response. Whichever the engine sees
  // first wins: either the response ends cancelled and nothing follows, or it ends as it would
  // have and the late cancel gets an error event (response_not_running). Exactly one final event.
  test('a cancel racing the natural end gives one final event either way', T, async () => {
    const seen = new Set();
    for (let i = 0; i < 8; ++i) {
      const s = await socket(server);
      const events = await s.turn({ type: 'response.create', input: `hi ${i}`, max_output_tokens: 1 + (i % 3), store: false }, (e) => {
        if (e.type === 'response.created') s.ws.send(JSON.stringify({ type: 'response.cancel' }));
      });
      const finals = events.filter((e) => ['response.completed', 'response.incomplete', 'response.failed'].includes(e.type));
      assert.equal(finals.length, 1, JSON.stringify(events.map((e) => e.type)));
      const status = finals[0].response.status;
      seen.add(status);
      const after = await s.next(300);
      if (status === 'cancelled') {
        assert.equal(after, null, 'nothing follows a cancelled response');
      } else {
        assert.ok(['completed', 'incomplete'].includes(status), status);
        assert.equal(after?.type, 'error', 'the late cancel is answered');
        assert.equal(after.code, 'response_not_running');
      }
      s.ws.close();
    }
    assert.ok(seen.size >= 1);
  });

  test('a cancel with nothing running is an error event, and the socket stays usable', T, async () => {
    const s = await socket(server);
    s.ws.send(JSON.stringify({ type: 'response.cancel', response_id: 'resp_unknown' }));
    const events = await s.turn({ type: 'response.create', input: 'hi', max_output_tokens: 2, store: false });
    assert.equal(events[0].type, 'error');
    assert.equal(events[0].code, 'response_not_running');
    // The error ended that turn's wait; the response itself follows.
    const next = await s.turn({ type: 'response.create', input: 'hi again', max_output_tokens: 2, store: false });
    assert.ok(next.some((e) => e.type === 'response.created'));
    s.ws.close();
  });
});
