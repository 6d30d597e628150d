#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <queue>

#include "util/error.h"

namespace celer {
namespace {

std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += char(cp);
    } else if (cp < 0x800) {
        s += char(0xC0 | cp >> 6);
        s += char(0x80 | (cp & 0x3F));
    } else {
        s += char(0xE0 | cp >> 12);
        s += char(0x80 | (cp >> 6 & 0x3F));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

}  // namespace

const std::string& BpeEncoder::byte_symbol(uint8_t b) {
    // GPT-2's map: printable Latin-1 bytes stand for themselves, the other 68 bytes take code
    // points 256, 257, ... in byte order, so every token text is printable.
    static const std::vector<std::string> table = [] {
        std::vector<std::string> t(256);
        uint32_t next = 256;
        for (uint32_t c = 0; c < 256; ++c) {
            const bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
            t[c] = utf8(printable ? c : next++);
        }
        return t;
    }();
    return table[b];
}

BpeEncoder::BpeEncoder(const std::vector<std::string>& tokens, const std::vector<std::string_view>& merges, bool ignore_merges)
    : tokens_(tokens), ignore_merges_(ignore_merges) {
    index_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) index_.emplace(tokens_[i], TokenId(i));
    // Some vocabularies leave out bytes that never occur in UTF-8 (StarCoder lacks 0xC0 and
    // 0xC1, Falcon 28 more); such a byte is dropped when met, as llama.cpp does (and Hugging
    // Face's BPE without an unknown token). A vocabulary missing most of them is not byte-level.
    int missing = 0;
    for (int b = 0; b < 256; ++b) {
        auto it = index_.find(byte_symbol(uint8_t(b)));
        byte_token_[b] = it == index_.end() ? -1 : it->second;
        missing += it == index_.end();
    }
    if (missing > 128) throw Error(fmt::format("tokenizer.ggml.tokens: {} of the 256 byte symbols are missing: not a byte-level BPE vocabulary", missing));
    merges_.reserve(merges.size());
    std::string joined;
    for (size_t r = 0; r < merges.size(); ++r) {
        const std::string_view m = merges[r];
        const size_t sp = m.find(' ', 1);
        if (sp == std::string_view::npos) throw Error(fmt::format("tokenizer.ggml.merges[{}]: '{}' is not \"left right\"", r, m));
        const auto a = index_.find(m.substr(0, sp)), b = index_.find(m.substr(sp + 1));
        joined.assign(m.substr(0, sp));
        joined.append(m.substr(sp + 1));
        const auto c = index_.find(joined);
        if (a == index_.end() || b == index_.end() || c == index_.end()) continue;  // cannot apply: skip as the reference does
        merges_.try_emplace(key(a->second, b->second), Merge{int32_t(r), c->second});
    }
}

void BpeEncoder::merge_symbols(std::vector<TokenId>& syms) const {
    const int n = int(syms.size());
    if (n < 2) return;
    // Doubly linked list over positions; a heap of candidate merges checked lazily on pop.
    std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        prev[size_t(i)] = i - 1;
        next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    }
    struct Cand {
        int32_t rank;
        int left;
        TokenId a, b;
    };
    auto later = [](const Cand& x, const Cand& y) { return x.rank > y.rank || (x.rank == y.rank && x.left > y.left); };
    std::priority_queue<Cand, std::vector<Cand>, decltype(later)> heap(later);
    auto consider = [&](int l) {
        if (l < 0 || next[size_t(l)] < 0) return;
        const TokenId a = syms[size_t(l)], b = syms[size_t(next[size_t(l)])];
        const auto it = merges_.find(key(a, b));
        if (it != merges_.end()) heap.push({it->second.rank, l, a, b});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i);
    while (!heap.empty()) {
        const Cand c = heap.top();
        heap.pop();
        const int r = next[size_t(c.left)];
        // Stale if the left symbol was absorbed or either side changed since the push.
        if (syms[size_t(c.left)] != c.a || r < 0 || syms[size_t(r)] != c.b) continue;
        syms[size_t(c.left)] = merges_.find(key(c.a, c.b))->second.result;
        syms[size_t(r)] = -1;
        next[size_t(c.left)] = next[size_t(r)];
        if (next[size_t(r)] >= 0) prev[size_t(next[size_t(r)])] = c.left;
        consider(prev[size_t(c.left)]);
        consider(c.left);
    }
    size_t w = 0;
    for (int i = 0; i >= 0; i = next[size_t(i)]) syms[w++] = syms[size_t(i)];
    syms.resize(w);
}

void BpeEncoder::encode_word(std::string_view word, std::vector<TokenId>& out) const {
    if (word.empty()) return;
    const bool cacheable = word.size() <= kCacheWordMax;
    if (cacheable) {
        std::lock_guard lk(cache_mu_);
        if (auto it = cache_.find(std::string(word)); it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<TokenId> syms;
    std::string mapped;
    if (ignore_merges_) {
        for (char c : word) mapped += byte_symbol(uint8_t(c));
        if (auto it = index_.find(mapped); it != index_.end()) syms.push_back(it->second);
    }
    if (syms.empty()) {
        syms.reserve(word.size());
        for (char c : word)
            if (byte_token_[uint8_t(c)] >= 0) syms.push_back(byte_token_[uint8_t(c)]);
        merge_symbols(syms);
    }
    out.insert(out.end(), syms.begin(), syms.end());
    if (cacheable) {
        std::lock_guard lk(cache_mu_);
        if (cache_.size() >= kCacheMax) cache_.clear();
        cache_.emplace(std::string(word), std::move(syms));
    }
}

}  // namespace celer
