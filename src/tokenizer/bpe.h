// Byte-level BPE (GPT-2 family): each byte of a pre-tokenized word is written as a printable
// code point, then adjacent symbols are merged by rank, lowest first (ties: leftmost), as long
// as a merge applies. Symbols are token ids throughout, so a merge is one hash look-up.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace celer {

using TokenId = int32_t;

class BpeEncoder {
public:
    // `merges` are "left right" strings by rank. With ignore_merges (Llama 3), a word that is a
    // token as a whole is emitted as that token without merging. Throws celer::Error when the
    // vocabulary lacks one of the 256 byte symbols.
    BpeEncoder(const std::vector<std::string>& tokens, const std::vector<std::string_view>& merges, bool ignore_merges);

    // Appends the tokens of one pre-tokenized word (raw bytes).
    void encode_word(std::string_view word, std::vector<TokenId>& out) const;

    // The printable code point (as UTF-8) that stands for byte b in token texts.
    static const std::string& byte_symbol(uint8_t b);

private:
    struct Merge {
        int32_t rank;
        TokenId result;
    };
    static uint64_t key(TokenId a, TokenId b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }
    void merge_symbols(std::vector<TokenId>& syms) const;

    std::vector<std::string> tokens_;                      // own copy: index_ views into it
    std::unordered_map<std::string_view, TokenId> index_;
    std::unordered_map<uint64_t, Merge> merges_;
    TokenId byte_token_[256];
    bool ignore_merges_;

    // Words repeat (identifiers, keywords, indentation): their tokens are cached.
    mutable std::mutex cache_mu_;
    mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
    static constexpr size_t kCacheMax = 1 << 16;
    static constexpr size_t kCacheWordMax = 64;  // longer words are rare and not worth keeping
};

}  // namespace celer
