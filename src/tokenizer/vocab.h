// Vocabulary from GGUF metadata (tokenizer.ggml.*) with its encoder: SentencePiece-style for
// llama-family files, byte-level BPE with the family's pre-tokenizer for gpt2-type files
// (Qwen, DeepSeek-Coder, Llama 3, StarCoder, ...).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <memory>

#include "gguf/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"

namespace celer {

enum class TokenAttr : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

enum class VocabKind { Spm, Bpe };

// Fill-in-the-middle control tokens; -1 where the vocabulary has none.
struct FimTokens {
    TokenId prefix = -1, suffix = -1, middle = -1;
    TokenId pad = -1, repo = -1, file_sep = -1;
    bool available() const { return prefix >= 0 && suffix >= 0 && middle >= 0; }
};

class Vocab {
public:
    static Vocab load(const gguf::File& f);  // throws celer::Error naming the key at fault
    // From a Hugging Face tokenizer.json (and tokenizer_config.json beside it), through the
    // same GGUF metadata a converted model would carry, so both paths share one loader.
    static Vocab load_hf(const std::string& tokenizer_json_path);
    // A GGUF file, or a tokenizer.json when the path ends in ".json".
    static Vocab load_any(const std::string& path);

    VocabKind kind() const { return kind_; }
    const std::string& model_name() const { return model_; }
    size_t size() const { return tokens_.size(); }
    std::string_view token(TokenId id) const { return tokens_[size_t(id)]; }
    float score(TokenId id) const { return scores_.empty() ? 0.0f : scores_[size_t(id)]; }
    TokenAttr attr(TokenId id) const { return attrs_.empty() ? TokenAttr::Normal : attrs_[size_t(id)]; }

    TokenId bos() const { return bos_; }
    TokenId eos() const { return eos_; }
    bool add_bos() const { return add_bos_; }
    bool is_eog(TokenId id) const { return id == eos_ || id == eot_; }

    // Encodes text without BOS/EOS. The text of a user-defined token always becomes that token
    // (as in llama.cpp and Hugging Face tokenizers); the text of a control token (<|im_start|>,
    // </s>) becomes that token only with parse_special, else it is encoded as plain text.
    std::vector<TokenId> encode(std::string_view text, bool parse_special = false) const;
    const FimTokens& fim() const { return fim_; }
    // A fill-in-the-middle prompt in prefix-suffix-middle order, as Qwen2.5-Coder, DeepSeek-Coder
    // and StarCoder were trained: PRE prefix SUF suffix MID (no BOS). Throws celer::Error when
    // the vocabulary has no FIM tokens.
    std::vector<TokenId> fim_prompt(std::string_view prefix, std::string_view suffix) const;

    // The bytes a token stands for. Control tokens give nothing unless `special`, then their
    // text (so that text with special tokens survives encode + decode).
    std::string piece(TokenId id, bool special = false) const;
    // The special token whose text starts at text[i] (longest first), or -1. Without
    // parse_special only user-defined tokens count.
    TokenId special_at(std::string_view text, size_t i, bool parse_special) const;

private:
    void encode_plain(std::string_view text, bool first, std::vector<TokenId>& out) const;
    void encode_spm(std::string_view text, bool space_prefix, std::vector<TokenId>& out) const;
    TokenId find(std::string_view s) const;
    void find_fim_tokens(const gguf::File& f);

    VocabKind kind_ = VocabKind::Spm;
    std::string model_;
    std::vector<std::string> tokens_;
    std::vector<float> scores_;
    std::vector<TokenAttr> attrs_;
    std::unordered_map<std::string_view, TokenId> index_;
    std::vector<TokenId> specials_;  // control and user-defined tokens, longest text first
    bool special_first_byte_[256] = {};
    std::shared_ptr<const PreTokenizer> pre_;  // BPE only
    std::shared_ptr<const BpeEncoder> bpe_;    // BPE only
    TokenId byte_tokens_[256];
    TokenId bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1;
    FimTokens fim_;
    bool add_bos_ = false;
    bool add_space_prefix_ = true;
};

// Joins token pieces into text for streaming, holding back an incomplete UTF-8 sequence until
// its last byte arrives, so a client never receives half a character.
class Utf8Stream {
public:
    std::string push(std::string_view bytes);
    std::string flush();  // whatever is held back, even if incomplete

private:
    std::string pending_;
};

}  // namespace celer
