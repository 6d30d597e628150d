// libFuzzer target: arbitrary bytes through the GGUF reader, then the vocabulary and model
// loaders, which check metadata and shapes. Any crash, sanitizer report or exception other
// than celer::Error is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto f = celer::gguf::File::parse("fuzz.gguf", std::span(data, size));
        for (const auto& [key, v] : f.metadata()) {
            (void)key;
            if (v.is_integer()) (void)v.num.u;
        }
        try {
            const auto vocab = celer::Vocab::load(f);
            if (vocab.kind() == celer::VocabKind::Spm) (void)vocab.encode("fuzz \xe2\x96\x81 text", true);
            for (size_t i = 0; i < vocab.size() && i < 64; ++i) (void)vocab.piece(celer::TokenId(i));
        } catch (const celer::Error&) {
        }
        (void)celer::load_model(std::move(f));
    } catch (const celer::Error&) {
    }
    return 0;
}
