// Requests exactly as OpenAI's Codex CLI 0.169.0 sent them to celer serve (captured through a
// logging proxy; tests/server/codex/*.json): a 40 KB prompt of developer messages, function
// tools beside `namespace` and `web_search` tools, store: false, include, reasoning,
// prompt_cache_key, client_metadata. Over SSE, and over the WebSocket where Codex first sends a
// warm-up (generate: false) and then each turn with previous_response_id and only new items.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { raw, socket, startServer, stopAll, synthQwen, watchdog } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const capture = (name) => JSON.parse(readFileSync(path.join(here, 'codex', name), 'utf8'));
const T = { timeout: 30_000 };
watchdog(120);

// Server-sent events of a body, as [{event, data}].
function sseEvents(text) {
  return text
    .split('\n\n')
    .filter((b) => b.trim())
    .map((b) => {
      const ev = /^event: (.*)$/m.exec(b)?.[1];
      const data = /^data: (.*)$/m.exec(b)?.[1];
      return { event: ev, data: JSON.parse(data) };
    });
}

describe('Codex CLI requests', () => {
  let server, small, model;
  before(async () => {
    model = synthQwen();
    server = await startServer({ model, args: ['-c', '8192', '--max-tokens', '8'] });
    small = await startServer({ model, args: ['-c', '4096'] });
  });
  after(async () => {
    await server?.stop();
    await small?.stop();
    await stopAll();
  });

  // The first turn and the turn after a tool call, over SSE: a well-formed event stream.
  for (const name of ['sse-turn1.json', 'sse-turn1-after-tool-call.json']) {
    test(`SSE ${name}`, T, async () => {
      const r = await raw(server, 'POST', '/v1/responses', { body: JSON.stringify(capture(name)), headers: { authorization: 'Bearer dummy' } });
      assert.equal(r.status, 200, r.text);
      const events = sseEvents(r.text);
      assert.equal(events[0].event, 'response.created');
      const last = events.at(-1);
      assert.ok(['response.completed', 'response.incomplete'].includes(last.event), last.event);
      assert.ok(last.data.response.usage.input_tokens > 5000, 'the whole 40 KB prompt was rendered');
      events.forEach((e, i) => assert.equal(e.data.sequence_number, i));
    });
  }

  // The WebSocket warm-up prefills and completes with no output; the turn that follows names
  // it as previous_response_id, sends only its new items, and finds the warm-up's tokens cached.
  test('WebSocket warm-up (generate: false) then an incremental turn', T, async () => {
    const s = await socket(server);
    const warm = await s.turn(capture('ws-prewarm-generate-false.json'));
    const done = warm.at(-1);
    assert.equal(done.type, 'response.completed', JSON.stringify(done));
    assert.deepEqual(done.response.output, []);
    assert.equal(done.response.usage.output_tokens, 0);
    assert.ok(!warm.some((e) => e.type === 'response.output_text.delta'), 'a warm-up generates nothing');

    const turn = capture('ws-turn1-incremental-previous_response_id.json');
    turn.previous_response_id = done.response.id;
    const events = await s.turn(turn);
    const end = events.at(-1);
    assert.ok(['response.completed', 'response.incomplete'].includes(end.type), JSON.stringify(end));
    const u = end.response.usage;
    assert.ok(u.input_tokens > done.response.usage.input_tokens);
    // All of the warm-up's prompt but its generation prompt ("<|im_start|>assistant\n", which the
    // next turn's messages replace) was found in the cache.
    assert.ok(u.input_tokens_details.cached_tokens >= done.response.usage.input_tokens - 3, JSON.stringify(u));
    s.ws.close();
  });

  // A prompt beyond the context is refused before the stream starts, with the code Codex knows
  // ("context_length_exceeded" makes it say the context window is full), over HTTP and WebSocket.
  test('context too small: 400 context_length_exceeded, never a broken stream', T, async () => {
    const r = await raw(small, 'POST', '/v1/responses', { body: JSON.stringify(capture('sse-turn1.json')) });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'context_length_exceeded');
    assert.equal(r.json.error.param, 'input');
    const s = await socket(small);
    const events = await s.turn(capture('ws-prewarm-generate-false.json'));
    assert.equal(events.at(-1).type, 'error');
    assert.equal(events.at(-1).code, 'context_length_exceeded');
    s.ws.close();
  });
});
