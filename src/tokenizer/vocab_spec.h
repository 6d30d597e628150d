// A tokenizer as plain data, independent of where it came from: GGUF metadata
// (tokenizer.ggml.*) or a Hugging Face tokenizer.json (+ tokenizer_config.json). Vocab is built
// from it, and synth writes it into new GGUF files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace celer {

namespace gguf {
class File;
class Writer;
}  // namespace gguf

struct VocabSpec {
    std::string model;                // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    std::string pre;                  // pre-tokenizer family: "default", "qwen2", "llama-bpe", ...
    std::vector<std::string> tokens;  // (n_tokens)
    std::vector<float> scores;        // (n_tokens) or empty
    std::vector<int32_t> types;       // (n_tokens) TokenAttr values, or empty
    std::vector<std::string> merges;  // BPE merges "left right", by rank
    int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;
    std::optional<bool> add_bos, add_eos, add_space_prefix;
    std::string chat_template;
};

// Reads tokenizer.json; tokenizer_config.json beside it, if present, supplies BOS/EOS, whether
// to add BOS, and the chat template. Throws celer::Error naming the file and field.
VocabSpec vocab_spec_from_hf(const std::string& tokenizer_json_path);

// Writes the spec as tokenizer.* metadata, padding the token list to n_tokens entries (an
// embedding often has more rows than the tokenizer has tokens).
void write_vocab_spec(gguf::Writer& w, const VocabSpec& spec, size_t n_tokens);

}  // namespace celer
