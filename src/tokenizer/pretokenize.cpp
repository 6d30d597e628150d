#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include <mutex>
#include <unordered_map>

#include "util/error.h"

namespace celer {
namespace {

// GPT-2's pattern, which most byte-level tokenizers start from.
constexpr std::string_view kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Qwen2/2.5/3: case-insensitive contractions, a letter run may take one leading non-letter,
// digits one at a time, punctuation runs keep trailing newlines.
constexpr std::string_view kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Llama 3: as Qwen2 but digits in groups of up to three.
constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Family {
    std::string_view name;
    std::vector<std::string_view> patterns;
};

const std::vector<Family>& families() {
    static const std::vector<Family> f = {
        {"gpt2", {kGpt2}},
        {"gpt-2", {kGpt2}},
        {"mpt", {kGpt2}},
        {"olmo", {kGpt2}},
        {"default", {kGpt2}},
        {"qwen2", {kQwen2}},
        {"deepseek-r1-qwen", {kQwen2}},
        {"llama-bpe", {kLlama3}},
        {"llama3", {kLlama3}},
        {"llama-v3", {kLlama3}},
        {"starcoder", {R"(\p{N})", kGpt2}},
        {"refact", {R"(\p{N})", kGpt2}},
        {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, R"([0-9][0-9][0-9])"}},
        {"deepseek-coder",
         {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N})"}},
        {"deepseek-llm",
         {R"([\r\n])",
          "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376"
          "\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-"
          "\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
          "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4"
          "\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
          "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
          "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
          "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
          "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
          "\U000118a0-\U000118df\U0001e900-\U0001e943]+",
          "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", R"(\s+$)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
          R"(\p{N}+)"}},
    };
    return f;
}

}  // namespace

struct PreTokenizer::Regex {
    pcre2_code* code = nullptr;
    ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string_view> pre_tokenizer_families() {
    std::vector<std::string_view> v;
    for (const auto& f : families()) v.push_back(f.name);
    return v;
}

std::shared_ptr<const PreTokenizer> PreTokenizer::for_family(std::string_view pre) {
    // Compiled patterns are immutable and shared by every vocabulary of the family.
    static std::mutex mu;
    static std::unordered_map<std::string, std::shared_ptr<const PreTokenizer>> cache;
    std::lock_guard lk(mu);
    if (auto it = cache.find(std::string(pre)); it != cache.end()) return it->second;
    const Family* fam = nullptr;
    for (const auto& f : families())
        if (f.name == pre) fam = &f;
    if (!fam)
        throw Error(fmt::format("tokenizer.ggml.pre: unknown pre-tokenizer '{}' (known: {})", pre, fmt::join(pre_tokenizer_families(), ", ")));
    auto p = std::shared_ptr<PreTokenizer>(new PreTokenizer());
    p->family_ = std::string(pre);
    p->nfc_ = fam->patterns.front() == kQwen2;
    for (std::string_view pat : fam->patterns) {
        int err = 0;
        PCRE2_SIZE at = 0;
        auto r = std::make_unique<Regex>();
        // DOLLAR_ENDONLY: `$` is the end of the text, as in the reference's regex engine.
        r->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &err, &at, nullptr);
        if (!r->code) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            throw Error(fmt::format("pre-tokenizer '{}': pattern fails to compile at {}: {}", pre, at, reinterpret_cast<char*>(msg)));
        }
        pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
        p->regexes_.push_back(std::move(r));
    }
    cache.emplace(std::string(pre), p);
    return p;
}

void PreTokenizer::split(std::string_view text, std::vector<std::pair<size_t, size_t>>& pieces) const {
    const size_t first = pieces.size();
    pieces.emplace_back(0, text.size());
    if (text.empty()) {
        pieces.pop_back();
        return;
    }
    std::vector<std::pair<size_t, size_t>> next;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    for (const auto& re : regexes_) {
        pcre2_match_data* md = pcre2_match_data_create_from_pattern(re->code, nullptr);
        next.clear();
        for (size_t p = first; p < pieces.size(); ++p) {
            const auto [start, len] = pieces[p];
            const size_t end = start + len;
            size_t pos = start, gap = start;
            while (pos < end) {
                // The piece is matched as a text of its own: lookarounds and `$` see its ends.
                const int rc = pcre2_match(re->code, subject + start, len, pos - start, 0, md, nullptr);
                if (rc < 0) break;
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
                const size_t ms = start + ov[0], me = start + ov[1];
                if (me == ms) {  // an empty match: step over one character and keep looking
                    pos = me + 1;
                    while (pos < end && (uint8_t(text[pos]) & 0xC0) == 0x80) ++pos;
                    continue;
                }
                if (ms > gap) next.emplace_back(gap, ms - gap);
                next.emplace_back(ms, me - ms);
                gap = pos = me;
            }
            if (gap < end) next.emplace_back(gap, end - gap);
        }
        pcre2_match_data_free(md);
        pieces.resize(first);
        pieces.insert(pieces.end(), next.begin(), next.end());
    }
}

}  // namespace celer
