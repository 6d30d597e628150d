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
