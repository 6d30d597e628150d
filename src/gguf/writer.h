// GGUF v3 writer. Metadata is encoded as it is added; tensor data is streamed one tensor at a
// time through a callback, so a 7B model is written without holding it in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"

namespace celer::gguf {

class Writer {
public:
    void set_u32(std::string_view key, uint32_t v);
    void set_i32(std::string_view key, int32_t v);
    void set_u64(std::string_view key, uint64_t v);
    void set_f32(std::string_view key, float v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string_view v);
    void set_string_array(std::string_view key, std::span<const std::string_view> v);
    void set_f32_array(std::string_view key, std::span<const float> v);
    void set_i32_array(std::string_view key, std::span<const int32_t> v);
    // Copies one metadata entry (any type, arrays included) from a parsed file.
    void copy_value(std::string_view key, const Value& v);

    // ne[0] is the row length. Returns the tensor's index for the fill callback.
    size_t add_tensor(std::string name, TensorType type, std::vector<uint64_t> ne);

    struct PlannedTensor {
        std::string name;
        TensorType type;
        std::vector<uint64_t> ne;
        uint64_t n_bytes;
        uint64_t offset;
    };
    const std::vector<PlannedTensor>& tensors() const { return tensors_; }

    // fill(i, out) writes tensor i's bytes into out (exactly n_bytes). Writes to a temporary
    // file and renames it, so a failed write never leaves a half file under `path`.
    using Fill = std::function<void(size_t index, std::span<uint8_t> out)>;
    void write(const std::string& path, const Fill& fill) const;

    // The encoded header, metadata and tensor infos (no data): for tests that craft files.
    std::vector<uint8_t> encode_header() const;

private:
    void key(std::string_view k, ValueType t);
    void put_value(const Value& v);
    template <class T>
    void put(T v);
    void put_string(std::string_view s);

    std::vector<uint8_t> kv_;
    uint64_t n_kv_ = 0;
    std::vector<PlannedTensor> tensors_;
    uint64_t data_size_ = 0;
};

}  // namespace celer::gguf
