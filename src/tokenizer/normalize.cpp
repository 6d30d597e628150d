#include "tokenizer/normalize.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

namespace celer {
namespace {

bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = uint8_t(s[i]);
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1Fu;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0Fu;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07u;
        } else {
            return false;
        }
        if (i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k) {
            if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return false;
            cp = cp << 6 | (uint8_t(s[i + k]) & 0x3Fu);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
        static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
        i += n;
    }
    return true;
}

}  // namespace

std::string to_nfc(std::string_view text) {
    // Lead bytes below 0xCC encode code points below U+0300, all of which are NFC-stable and
    // never compose with a neighbour that is also below U+0300.
    bool high = false;
    for (char c : text)
        if (uint8_t(c) >= 0xCC) {
            high = true;
            break;
        }
    if (!high || !valid_utf8(text)) return std::string(text);
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
    if (U_FAILURE(err)) return std::string(text);
    std::string out;
    icu::StringByteSink<std::string> sink(&out, int32_t(text.size()));
    nfc->normalizeUTF8(0, icu::StringPiece(text.data(), int32_t(text.size())), sink, nullptr, err);
    return U_SUCCESS(err) ? out : std::string(text);
}

}  // namespace celer
