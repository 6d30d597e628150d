// Tensor element types, numbered as GGUF numbers them (the numbers are the file format).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace celer {

enum class TensorType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
};

struct TypeTraits {
    TensorType type;
    std::string_view name;
    uint32_t block_elems;  // elements per block; a row length must be a multiple of it
    uint32_t block_bytes;  // bytes per block
};

// The types celer computes with, in a fixed order (tables indexed by type_index()).
inline constexpr TypeTraits kTypeTraits[] = {
    {TensorType::F32, "F32", 1, 4},       {TensorType::F16, "F16", 1, 2},       {TensorType::BF16, "BF16", 1, 2},
    {TensorType::Q8_0, "Q8_0", 32, 34},   {TensorType::Q4_0, "Q4_0", 32, 18},   {TensorType::Q4_1, "Q4_1", 32, 20},
    {TensorType::Q5_0, "Q5_0", 32, 22},   {TensorType::Q5_1, "Q5_1", 32, 24},   {TensorType::Q4_K, "Q4_K", 256, 144},
    {TensorType::Q5_K, "Q5_K", 256, 176}, {TensorType::Q6_K, "Q6_K", 256, 210},
};
inline constexpr size_t kTypeCount = std::size(kTypeTraits);

// Returns the traits of a supported type, or nothing for a number celer does not compute with.
constexpr std::optional<TypeTraits> find_type(uint32_t raw) {
    for (const auto& t : kTypeTraits)
        if (uint32_t(t.type) == raw) return t;
    return std::nullopt;
}

constexpr const TypeTraits& traits(TensorType t) {
    for (const auto& tt : kTypeTraits)
        if (tt.type == t) return tt;
    return kTypeTraits[0];  // unreachable for a valid enum value
}

constexpr size_t type_index(TensorType t) {
    for (size_t i = 0; i < kTypeCount; ++i)
        if (kTypeTraits[i].type == t) return i;
    return 0;
}

// Names of the GGML types that exist but celer does not support, for a clearer error.
std::string_view ggml_type_name(uint32_t raw);

std::optional<TensorType> parse_type_name(std::string_view name);

constexpr size_t row_bytes(TensorType t, size_t n_elems) {
    const auto& tt = traits(t);
    return n_elems / tt.block_elems * tt.block_bytes;
}

}  // namespace celer
