// Pre-tokenizers of byte-level BPE vocabularies: a family's regexes cut text into words before
// BPE merges run inside each word. The regexes are those of each family's tokenizer.json, run by
// PCRE2 with JIT in UTF + UCP mode (Unicode \p{L}, \p{N}, \s), so they match the reference's
// Unicode semantics. A sequence of regexes splits each previous piece further; like the
// reference's "Isolated" split, text between matches is kept as a piece of its own.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace celer {

class PreTokenizer {
public:
    // `pre` is tokenizer.ggml.pre ("qwen2", "llama-bpe", "deepseek-coder", ...). Unknown names
    // throw celer::Error listing the known ones.
    static std::shared_ptr<const PreTokenizer> for_family(std::string_view pre);
    ~PreTokenizer();

    // Appends the pieces of `text` as (offset, length) pairs covering it in order. Bytes that
    // are not valid UTF-8 never match a pattern, so they end up in pieces of their own.
    void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& pieces) const;

    const std::string& family() const { return family_; }
    // Whether the family's tokenizer normalises text to NFC first (Qwen2 does).
    bool nfc() const { return nfc_; }

private:
    struct Regex;
    PreTokenizer() = default;
    std::string family_;
    bool nfc_ = false;
    std::vector<std::unique_ptr<Regex>> regexes_;
};

// Known family names, for messages and tests.
std::vector<std::string_view> pre_tokenizer_families();

}  // namespace celer
