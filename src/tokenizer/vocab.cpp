#include "tokenizer/vocab.h"

#include <fmt/format.h>

#include <algorithm>
#include <queue>
#include <utility>

#include "gguf/writer.h"
#include "tokenizer/normalize.h"
#include "tokenizer/vocab_spec.h"
#include "util/error.h"

namespace celer {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

size_t utf8_len(uint8_t lead) {
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0) return 2;
    if ((lead & 0xF0) == 0xE0) return 3;
    if ((lead & 0xF8) == 0xF0) return 4;
    return 1;  // a stray continuation byte stands alone
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// GPT-2's byte-level BPE writes every byte as a printable code point; this inverts that map.
std::vector<int> gpt2_codepoint_to_byte() {
    std::vector<int> inv(512, -1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        inv[size_t(printable ? b : 256 + n++)] = b;
    }
    return inv;
}

}  // namespace

Vocab Vocab::load(const gguf::File& f) {
    Vocab v;
    const auto model = f.get_string("tokenizer.ggml.model");
    if (!model) f.fail("tokenizer.ggml.model", "missing (the file has no tokenizer)");
    v.model_ = std::string(*model);
    if (v.model_ == "llama") {
        v.kind_ = VocabKind::Spm;
    } else if (v.model_ == "gpt2") {
        v.kind_ = VocabKind::Bpe;
    } else {
        f.fail("tokenizer.ggml.model", fmt::format("unsupported tokenizer model '{}' (supported: llama, gpt2)", v.model_));
    }
    const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    if (tokens.empty()) f.fail("tokenizer.ggml.tokens", "missing or empty");
    if (tokens.size() > (1u << 24)) f.fail("tokenizer.ggml.tokens", "more than 16M tokens");
    v.tokens_.assign(tokens.begin(), tokens.end());
    v.scores_ = f.get_f32_array("tokenizer.ggml.scores");
    if (!v.scores_.empty() && v.scores_.size() != v.tokens_.size())
        f.fail("tokenizer.ggml.scores", fmt::format("{} scores for {} tokens", v.scores_.size(), v.tokens_.size()));
    const auto types = f.get_i32_array("tokenizer.ggml.token_type");
    if (!types.empty()) {
        if (types.size() != v.tokens_.size())
            f.fail("tokenizer.ggml.token_type", fmt::format("{} types for {} tokens", types.size(), v.tokens_.size()));
        v.attrs_.reserve(types.size());
        for (int32_t t : types) v.attrs_.push_back(t >= 0 && t <= 6 ? TokenAttr(t) : TokenAttr::Normal);
    }
    v.index_.reserve(v.tokens_.size());
    for (size_t i = 0; i < v.tokens_.size(); ++i) v.index_.emplace(v.tokens_[i], TokenId(i));

    auto special = [&](std::string_view key, TokenId fallback) -> TokenId {
        const auto id = f.get_uint(key);
        if (!id) return fallback;
        if (*id >= v.tokens_.size()) f.fail(key, fmt::format("token id {} is outside the vocabulary of {}", *id, v.tokens_.size()));
        return TokenId(*id);
    };
    const bool spm = v.kind_ == VocabKind::Spm;
    v.bos_ = special("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
    v.eos_ = special("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
    v.eot_ = special("tokenizer.ggml.eot_token_id", -1);
    v.unk_ = special("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
    if (size_t(std::max({v.bos_, v.eos_, v.unk_})) >= v.tokens_.size()) f.fail("tokenizer.ggml.tokens", "too few tokens for the special ids");
    v.add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token").value_or(spm);
    v.add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);

    for (int b = 0; b < 256; ++b) v.byte_tokens_[b] = v.find(fmt::format("<0x{:02X}>", b));
    for (size_t i = 0; i < v.tokens_.size(); ++i) {
        const TokenAttr a = v.attr(TokenId(i));
        if ((a == TokenAttr::Control || a == TokenAttr::UserDefined) && !v.tokens_[i].empty()) {
            v.specials_.push_back(TokenId(i));
            v.special_first_byte_[uint8_t(v.tokens_[i][0])] = true;
        }
    }
    v.find_fim_tokens(f);
    if (v.kind_ == VocabKind::Bpe) {
        const std::string pre(f.get_string("tokenizer.ggml.pre").value_or("default"));
        try {
            v.pre_ = PreTokenizer::for_family(pre);
            const bool llama3 = pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3";
            v.bpe_ = std::make_shared<BpeEncoder>(v.tokens_, f.get_string_array("tokenizer.ggml.merges"), llama3);
        } catch (const Error& e) {
            throw Error(fmt::format("{}: {}", f.path(), e.what()));
        }
    }
    std::stable_sort(v.specials_.begin(), v.specials_.end(),
                     [&](TokenId a, TokenId b) { return v.tokens_[size_t(a)].size() > v.tokens_[size_t(b)].size(); });
    return v;
}

// FIM token ids from metadata when the file records them, else by the texts the families use:
// Qwen2.5-Coder <|fim_prefix|>, StarCoder <fim_prefix>, DeepSeek-Coder <｜fim▁begin｜> (its
// "hole" is the suffix marker and "end" the middle one), CodeLlama <PRE>.
void Vocab::find_fim_tokens(const gguf::File& f) {
    auto pick = [&](std::string_view key, std::initializer_list<std::string_view> texts) -> TokenId {
        if (const auto id = f.get_uint(key); id && *id < tokens_.size()) return TokenId(*id);
        for (auto t : texts)
            if (const TokenId id = find(t); id >= 0) return id;
        return -1;
    };
    fim_.prefix = pick("tokenizer.ggml.fim_pre_token_id",
                       {"<|fim_prefix|>", "<fim_prefix>", "<fim-prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "\xe2\x96\x81<PRE>", "<PRE>"});
    fim_.suffix = pick("tokenizer.ggml.fim_suf_token_id",
                       {"<|fim_suffix|>", "<fim_suffix>", "<fim-suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>", "\xe2\x96\x81<SUF>", "<SUF>"});
    fim_.middle = pick("tokenizer.ggml.fim_mid_token_id",
                       {"<|fim_middle|>", "<fim_middle>", "<fim-middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "\xe2\x96\x81<MID>", "<MID>"});
    fim_.pad = pick("tokenizer.ggml.fim_pad_token_id", {"<|fim_pad|>", "<fim_pad>", "<fim-pad>"});
    fim_.repo = pick("tokenizer.ggml.fim_rep_token_id", {"<|repo_name|>", "<reponame>"});
    fim_.file_sep = pick("tokenizer.ggml.fim_sep_token_id", {"<|file_sep|>", "<file_sep>"});
}

std::vector<TokenId> Vocab::fim_prompt(std::string_view prefix, std::string_view suffix) const {
    if (!fim_.available()) throw Error(fmt::format("tokenizer '{}': this vocabulary has no fill-in-the-middle tokens", model_));
    std::vector<TokenId> out = {fim_.prefix};
    const auto p = encode(prefix), s = encode(suffix);
    out.insert(out.end(), p.begin(), p.end());
    out.push_back(fim_.suffix);
    out.insert(out.end(), s.begin(), s.end());
    out.push_back(fim_.middle);
    return out;
}

Vocab Vocab::load_hf(const std::string& path) {
    const VocabSpec spec = vocab_spec_from_hf(path);
    gguf::Writer w;
    write_vocab_spec(w, spec, spec.tokens.size());
    const std::vector<uint8_t> bytes = w.encode_header();
    return load(gguf::File::parse(path, bytes));
}

Vocab Vocab::load_any(const std::string& path) {
    if (path.ends_with(".json")) return load_hf(path);
    return load(gguf::File::open(path));
}

TokenId Vocab::find(std::string_view s) const {
    auto it = index_.find(s);
    return it == index_.end() ? -1 : it->second;
}

TokenId Vocab::special_at(std::string_view text, size_t i, bool parse_special) const {
    if (i >= text.size() || !special_first_byte_[uint8_t(text[i])]) return -1;
    for (TokenId id : specials_) {
        if (!parse_special && attr(id) != TokenAttr::UserDefined) continue;
        const std::string& t = tokens_[size_t(id)];
        if (text.compare(i, t.size(), t) == 0) return id;
    }
    return -1;
}

std::vector<TokenId> Vocab::encode(std::string_view text, bool parse_special) const {
    std::vector<TokenId> out;
    size_t start = 0;
    bool after_special = true;  // SentencePiece prefixes a space to text that opens a fragment
    for (size_t i = 0; i < text.size();) {
        const TokenId hit = special_at(text, i, parse_special);
        if (hit < 0) {
            ++i;
            continue;
        }
        if (i > start) encode_plain(text.substr(start, i - start), after_special, out);
        out.push_back(hit);
        after_special = true;
        i += tokens_[size_t(hit)].size();
        start = i;
    }
    if (start < text.size()) encode_plain(text.substr(start), after_special, out);
    return out;
}

void Vocab::encode_plain(std::string_view text, bool first, std::vector<TokenId>& out) const {
    if (kind_ == VocabKind::Spm) return encode_spm(text, first && add_space_prefix_, out);
    std::string normalized;
    if (pre_->nfc()) {
        normalized = to_nfc(text);
        text = normalized;
    }
    std::vector<std::pair<size_t, size_t>> pieces;
    pre_->split(text, pieces);
    for (const auto& [at, len] : pieces) bpe_->encode_word(text.substr(at, len), out);
}

// SentencePiece BPE as llama.cpp runs it: start from single UTF-8 characters and repeatedly
// merge the adjacent pair whose merged piece has the highest score (ties: leftmost first).
// Characters that never merge and are not in the vocabulary fall back to <0xXX> byte tokens.
void Vocab::encode_spm(std::string_view raw, bool space_prefix, std::vector<TokenId>& out) const {
    if (raw.empty()) return;
    std::string text;
    text.reserve(raw.size() + 3);
    if (space_prefix) text += kSpmSpace;
    for (char c : raw) {
        if (c == ' ') text += kSpmSpace;
        else text += c;
    }

    struct Symbol {
        int prev, next;
        size_t start, len;
    };
    std::vector<Symbol> sym;
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min(utf8_len(uint8_t(text[i])), text.size() - i);
        sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, i, n});
        i += n;
    }
    sym.back().next = -1;

    struct Bigram {
        float score;
        int left, right;
        size_t len;
    };
    auto worse = [](const Bigram& a, const Bigram& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto try_pair = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        const std::string_view piece(text.data() + sym[size_t(l)].start, sym[size_t(l)].len + sym[size_t(r)].len);
        const TokenId id = find(piece);
        if (id >= 0) queue.push({score(id), l, r, piece.size()});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(int(i - 1), int(i));

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = sym[size_t(b.left)];
        Symbol& r = sym[size_t(b.right)];
        if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale: a side has merged since
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[size_t(r.next)].prev = b.left;
        try_pair(l.prev, b.left);
        try_pair(b.left, l.next);
    }

    for (int i = 0; i >= 0 && size_t(i) < sym.size(); i = sym[size_t(i)].next) {
        const std::string_view piece(text.data() + sym[size_t(i)].start, sym[size_t(i)].len);
        const TokenId id = find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (char c : piece) {
            const TokenId bt = byte_tokens_[uint8_t(c)];
            out.push_back(bt >= 0 ? bt : unk_);
        }
    }
}

std::string Vocab::piece(TokenId id, bool special) const {
    if (id < 0 || size_t(id) >= tokens_.size()) return {};
    const TokenAttr a = attr(id);
    if (a == TokenAttr::Control) return special ? tokens_[size_t(id)] : std::string();
    if (a == TokenAttr::Unused) return {};
    const std::string& t = tokens_[size_t(id)];
    if (kind_ == VocabKind::Spm) {
        if (a == TokenAttr::Byte) {
            const int hi = hex_digit(t.size() == 6 ? t[3] : 'x'), lo = hex_digit(t.size() == 6 ? t[4] : 'x');
            if (t.starts_with("<0x") && t.back() == '>' && hi >= 0 && lo >= 0) return std::string(1, char(hi << 4 | lo));
        }
        std::string s;
        for (size_t i = 0; i < t.size();) {
            if (t.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
                s += ' ';
                i += kSpmSpace.size();
            } else {
                s += t[i++];
            }
        }
        return s;
    }
    if (a == TokenAttr::UserDefined) return t;
    static const std::vector<int> inv = gpt2_codepoint_to_byte();
    std::string s;
    for (size_t i = 0; i < t.size();) {
        const auto c0 = uint8_t(t[i]);
        uint32_t cp = c0;
        size_t n = 1;
        if ((c0 & 0xE0) == 0xC0 && i + 1 < t.size()) {
            cp = uint32_t(c0 & 0x1F) << 6 | (uint8_t(t[i + 1]) & 0x3F);
            n = 2;
        }
        if (cp < inv.size() && inv[cp] >= 0) s += char(inv[cp]);
        else s.append(t, i, n);
        i += n;
    }
    return s;
}

std::string Utf8Stream::push(std::string_view bytes) {
    pending_.append(bytes);
    // Find the start of a trailing sequence that is not yet complete.
    size_t cut = pending_.size();
    for (size_t back = 1; back <= 4 && back <= pending_.size(); ++back) {
        const auto c = uint8_t(pending_[pending_.size() - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        if (c >= 0xC0 && utf8_len(c) > back) cut = pending_.size() - back;
        break;
    }
    std::string out = pending_.substr(0, cut);
    pending_.erase(0, cut);
    return out;
}

std::string Utf8Stream::flush() { return std::exchange(pending_, {}); }

}  // namespace celer
