#include "tokenizer/vocab_spec.h"

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gguf/writer.h"
#include "tokenizer/vocab.h"
#include "util/error.h"
#include "util/text_file.h"

namespace celer {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
    const std::string text = read_text_file(path);
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error(fmt::format("{}: invalid JSON: {}", path, e.what()));
    }
}

// bos_token / eos_token are either a string or {"content": string} in tokenizer_config.json.
std::string token_text(const json& j) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
    return {};
}

// Some tokenizers leave "special": false on tokens that are control tokens in all but name
// (<|...|>, DeepSeek's <｜...｜>); llama.cpp's converter treats them as control, and so do we.
bool looks_special(const std::string& t) {
    auto wrapped = [&](std::string_view open, std::string_view close) {
        return t.size() > open.size() + close.size() && t.starts_with(open) && t.ends_with(close);
    };
    return wrapped("<|", "|>") || wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") || t == "<pad>" || t == "<mask>";
}

}  // namespace

VocabSpec vocab_spec_from_hf(const std::string& path) {
    const json j = read_json(path);
    auto fail = [&](std::string_view field, std::string_view problem) -> void {
        throw Error(fmt::format("{}: {}: {}", path, field, problem));
    };
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail("model", "missing");
    const json& m = j["model"];
    const std::string type = m.value("type", "");
    if (type != "BPE") fail("model.type", fmt::format("'{}' is not supported (byte-level BPE only)", type));
    if (m.value("byte_fallback", false))
        fail("model.byte_fallback", "SentencePiece-style BPE is not supported from tokenizer.json; use the GGUF's vocabulary");
    if (!m.contains("vocab") || !m["vocab"].is_object()) fail("model.vocab", "missing or not an object");

    VocabSpec s;
    s.model = "gpt2";
    constexpr int64_t kMaxId = 1 << 24;
    auto place = [&](int64_t id, const std::string& text, int32_t attr) {
        if (id < 0 || id >= kMaxId) fail("model.vocab", fmt::format("token id {} is out of range", id));
        if (size_t(id) >= s.tokens.size()) {
            s.tokens.resize(size_t(id) + 1);
            s.types.resize(size_t(id) + 1, -1);
        }
        s.tokens[size_t(id)] = text;
        s.types[size_t(id)] = attr;
    };
    for (const auto& [text, id] : m["vocab"].items()) {
        if (!id.is_number_integer()) fail("model.vocab", fmt::format("id of '{}' is not an integer", text));
        place(id.get<int64_t>(), text, int32_t(TokenAttr::Normal));
    }
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
        for (const auto& t : j["added_tokens"]) {
            if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") || !t["content"].is_string())
                fail("added_tokens", "entry without an integer id and string content");
            const std::string text = t["content"].get<std::string>();
            place(t["id"].get<int64_t>(), text, int32_t(t.value("special", false) || looks_special(text) ? TokenAttr::Control : TokenAttr::UserDefined));
        }
    }
    for (size_t i = 0; i < s.tokens.size(); ++i) {
        if (s.types[i] >= 0) continue;
        s.tokens[i] = fmt::format("[PAD{}]", i);  // a gap in the ids
        s.types[i] = int32_t(TokenAttr::Unused);
    }
    if (m.contains("merges") && m["merges"].is_array()) {
        for (const auto& mg : m["merges"]) {
            if (mg.is_string()) s.merges.push_back(mg.get<std::string>());
            else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string())
                s.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
            else fail("model.merges", "entry is neither \"a b\" nor [\"a\", \"b\"]");
        }
    }

    auto id_of = [&](const std::string& text) -> int32_t {
        for (size_t i = 0; i < s.tokens.size(); ++i)
            if (s.tokens[i] == text) return int32_t(i);
        return -1;
    };
    // The pre-tokenizer family, recognised by a special token only that family has.
    if (id_of("<|im_start|>") >= 0) s.pre = "qwen2";
    else if (id_of("<|begin_of_text|>") >= 0) s.pre = "llama-bpe";
    else if (id_of("<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>") >= 0) s.pre = "deepseek-coder";
    else s.pre = "gpt-2";  // llama.cpp's spelling (celer reads both)

    const auto config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    if (std::filesystem::exists(config)) {
        const json c = read_json(config.string());
        if (c.contains("bos_token")) s.bos = id_of(token_text(c["bos_token"]));
        if (c.contains("eos_token")) s.eos = id_of(token_text(c["eos_token"]));
        if (c.contains("pad_token")) s.pad = id_of(token_text(c["pad_token"]));
        if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) s.add_bos = c["add_bos_token"].get<bool>();
        if (c.contains("chat_template") && c["chat_template"].is_string()) s.chat_template = c["chat_template"].get<std::string>();
    } else {
        s.eos = id_of("<|endoftext|>");
    }
    if (s.tokens.empty()) fail("model.vocab", "empty");
    return s;
}

void write_vocab_spec(gguf::Writer& w, const VocabSpec& s, size_t n_tokens) {
    const size_t n = std::max(n_tokens, s.tokens.size());
    std::vector<std::string> pads;
    for (size_t i = s.tokens.size(); i < n; ++i) pads.push_back(fmt::format("[PAD{}]", i));
    std::vector<std::string_view> toks(s.tokens.begin(), s.tokens.end());
    toks.insert(toks.end(), pads.begin(), pads.end());
    w.set_string("tokenizer.ggml.model", s.model);
    if (!s.pre.empty()) w.set_string("tokenizer.ggml.pre", s.pre);
    w.set_string_array("tokenizer.ggml.tokens", toks);
    if (!s.scores.empty()) {
        auto scores = s.scores;
        scores.resize(n, -1e9f);
        w.set_f32_array("tokenizer.ggml.scores", scores);
    }
    auto types = s.types;
    if (types.empty()) types.assign(s.tokens.size(), int32_t(TokenAttr::Normal));
    types.resize(n, int32_t(TokenAttr::UserDefined));  // as the padding entries of real files are
    w.set_i32_array("tokenizer.ggml.token_type", types);
    if (!s.merges.empty()) {
        std::vector<std::string_view> merges(s.merges.begin(), s.merges.end());
        w.set_string_array("tokenizer.ggml.merges", merges);
    }
    auto id = [&](const char* key, int32_t v) {
        if (v >= 0) w.set_u32(key, uint32_t(v));
    };
    id("tokenizer.ggml.bos_token_id", s.bos);
    id("tokenizer.ggml.eos_token_id", s.eos);
    id("tokenizer.ggml.eot_token_id", s.eot);
    id("tokenizer.ggml.unknown_token_id", s.unk);
    id("tokenizer.ggml.padding_token_id", s.pad);
    if (s.add_bos) w.set_bool("tokenizer.ggml.add_bos_token", *s.add_bos);
    if (s.add_eos) w.set_bool("tokenizer.ggml.add_eos_token", *s.add_eos);
    if (s.add_space_prefix) w.set_bool("tokenizer.ggml.add_space_prefix", *s.add_space_prefix);
    if (!s.chat_template.empty()) w.set_string("tokenizer.chat_template", s.chat_template);
}

}  // namespace celer
