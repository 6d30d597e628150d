#include "tensor/types.h"

namespace celer {

std::string_view ggml_type_name(uint32_t raw) {
    // GGML's full numbering, so an error can say "Q5_0 is not supported" rather than "type 6".
    static constexpr std::string_view kNames[] = {
        "F32",  "F16",  "Q4_0", "Q4_1",    "Q4_2",    "Q4_3",   "Q5_0",  "Q5_1",  "Q8_0",  "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K",    "Q6_K",    "Q8_K",   "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
        "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",    "I16",   "I32",   "I64",   "F64",
        "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
    };
    return raw < std::size(kNames) ? kNames[raw] : std::string_view{};
}

std::optional<TensorType> parse_type_name(std::string_view name) {
    for (const auto& t : kTypeTraits) {
        if (t.name.size() != name.size()) continue;
        bool same = true;
        for (size_t i = 0; i < name.size() && same; ++i) {
            char c = name[i];
            if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
            same = c == t.name[i];
        }
        if (same) return t.type;
    }
    return std::nullopt;
}

}  // namespace celer
