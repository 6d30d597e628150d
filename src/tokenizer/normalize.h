// Unicode normalisation some tokenizers apply before pre-tokenizing (Qwen2's tokenizer.json has
// an NFC normalizer: "e" + U+0301 is encoded as "é"). GGUF files do not record it, so the
// pre-tokenizer family decides.
#pragma once

#include <string>
#include <string_view>

namespace celer {

// NFC of `text`. Text with no code point at or above U+0300 is already NFC and is returned as
// is without touching ICU (the common case for code); text that is not valid UTF-8 is returned
// unchanged, since normalising it would replace the invalid bytes and lose them.
std::string to_nfc(std::string_view text);

}  // namespace celer
