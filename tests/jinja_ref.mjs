// Reference renderer for the chat-template tests: @huggingface/jinja, the implementation celer's
// Jinja interpreter must match byte for byte.
//
// usage: node tests/jinja_ref.mjs CASES.json
//   CASES.json holds {"template": "...", "context": {...}} or {"batch": [{template, context}, ...]}.
// Prints one JSON value: {"ok": true, "output": "..."} or {"ok": false, "error": "..."} per case
// (an array of them for a batch). Exit status 0 unless the input itself cannot be read.
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";

function renderOne({ template, context }) {
    try {
        return { ok: true, output: new Template(template).render(context ?? {}) };
    } catch (e) {
        return { ok: false, error: String(e?.message ?? e) };
    }
}

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const result = Array.isArray(input.batch) ? input.batch.map(renderOne) : renderOne(input);
process.stdout.write(JSON.stringify(result));
