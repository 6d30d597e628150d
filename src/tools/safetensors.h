// Hugging Face safetensors files: an 8-byte little-endian header length, a JSON header
// {"NAME": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
// "__metadata__": {...}}, then the tensors' bytes, row-major. The file is mapped, not read:
// `celer convert` streams a 7B checkpoint one tensor at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/mapped_file.h"

namespace celer::safetensors {

enum class DType { F32, F16, BF16 };

struct Tensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;   // outermost first, as PyTorch: a Linear weight is (out, in)
    std::span<const uint8_t> data; // inside the mapping
    uint64_t elements() const;
    // Element i as a float (F16/BF16 widened).
    float at(uint64_t i) const;
    // Elements [first, first + n) as floats.
    void read(uint64_t first, uint64_t n, float* out) const;
};

class File {
public:
    // Maps and validates `path`: header size and JSON, every dtype known, every shape's byte
    // size equal to its data range, ranges inside the data and not overlapping. Throws
    // celer::Error naming the file and the tensor.
    explicit File(const std::string& path);
    // The same checks on bytes in memory (tests, the fuzzer); `bytes` must outlive the File.
    static File parse(const std::string& name, std::span<const uint8_t> bytes);

    const std::vector<Tensor>& tensors() const { return tensors_; }
    const Tensor* find(std::string_view name) const;
    const std::string& path() const { return path_; }

private:
    File() = default;
    void parse_header(std::span<const uint8_t> bytes);

    std::string path_;
    MappedFile map_;
    std::vector<Tensor> tensors_;
};

// A tensor to write: float values stored as `dtype`.
struct Output {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;
    std::vector<float> values;
};
// Writes a safetensors file (tests make small Hugging Face checkpoints with it).
void write(const std::string& path, const std::vector<Output>& tensors);

const char* dtype_name(DType t);

}  // namespace celer::safetensors
