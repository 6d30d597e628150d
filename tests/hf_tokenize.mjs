// Reference token ids from @huggingface/tokenizers, for tests/test_tokenizer_reference.cpp.
// usage: node hf_tokenize.mjs TOKENIZER_DIR BATCH.json  (BATCH: {"texts": [...]})
// prints {"ids": [[...], ...]} with no special tokens added.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, batchPath] = process.argv.slice(2);
const tokenizerJson = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
const tokenizerConfig = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
const { texts } = JSON.parse(readFileSync(batchPath, "utf8"));
const ids = texts.map((t) => Array.from(tokenizer.encode(t, { add_special_tokens: false }).ids));
process.stdout.write(JSON.stringify({ ids }));
