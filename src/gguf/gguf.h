// GGUF (v2, v3) reader. The whole file is mapped; every count, length, offset and shape is
// checked against the mapping before it is used, so a hostile file yields a celer::Error
// naming the file, the field and the problem, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/types.h"
#include "util/mapped_file.h"

namespace celer::gguf {

enum class ValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType t);

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr int kMaxDims = 4;

// A metadata value. Strings and array payloads point into the mapping.
struct Value {
    ValueType type = ValueType::U8;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
    } num{};
    std::string_view str;

    // Arrays: elements of a fixed-size type stay in the file as raw little-endian bytes.
    ValueType elem_type = ValueType::U8;
    uint64_t count = 0;
    const uint8_t* raw = nullptr;
    std::vector<std::string_view> strings;  // elem_type == STRING
    std::vector<Value> items;               // elem_type == ARRAY (nested)

    bool is_integer() const;
    bool is_float() const { return type == ValueType::F32 || type == ValueType::F64; }
};

struct TensorInfo {
    std::string name;
    TensorType type = TensorType::F32;
    int n_dims = 0;
    uint64_t ne[kMaxDims] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
    uint64_t offset = 0;                   // from the start of the data section
    uint64_t n_bytes = 0;
    const uint8_t* data = nullptr;

    uint64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    uint64_t rows() const { return ne[1] * ne[2] * ne[3]; }
};

class File {
public:
    static File open(const std::string& path);  // maps and parses
    // Parses bytes owned by the caller (fuzzing, tests). `name` is used in error messages.
    static File parse(std::string name, std::span<const uint8_t> bytes);
    File(File&&) = default;
    File& operator=(File&&) = default;
    File(const File&) = delete;  // the indexes hold views into this object's strings
    File& operator=(const File&) = delete;

    const std::string& path() const { return name_; }
    uint32_t version() const { return version_; }
    uint32_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    uint64_t metadata_end() const { return kv_end_; }  // first byte after the key-value section
    uint64_t file_size() const { return bytes_.size(); }

    const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }

    const Value* find(std::string_view key) const;
    const TensorInfo* find_tensor(std::string_view name) const;

    // Typed look-ups. A missing key gives nothing; a key of the wrong type is an error.
    std::optional<uint64_t> get_uint(std::string_view key) const;
    std::optional<double> get_float(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    std::optional<std::string_view> get_string(std::string_view key) const;
    std::vector<std::string_view> get_string_array(std::string_view key) const;
    std::vector<float> get_f32_array(std::string_view key) const;
    std::vector<int32_t> get_i32_array(std::string_view key) const;

    [[noreturn]] void fail(std::string_view field, std::string_view problem) const;

private:
    File() = default;
    void parse_all();

    std::string name_;
    std::shared_ptr<MappedFile> map_;  // empty when parsing caller-owned bytes
    std::span<const uint8_t> bytes_;
    uint32_t version_ = 0;
    uint32_t alignment_ = kDefaultAlignment;
    uint64_t data_offset_ = 0;
    uint64_t kv_end_ = 0;
    std::vector<std::pair<std::string, Value>> kv_;
    std::unordered_map<std::string_view, size_t> kv_index_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace celer::gguf
