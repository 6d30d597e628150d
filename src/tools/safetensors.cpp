#include "tools/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fp16.h"

namespace celer::safetensors {

namespace {

using nlohmann::json;

// A header is JSON text; real ones are a few hundred KB. Anything past this is not a header.
constexpr uint64_t kMaxHeader = 100u << 20;

size_t dtype_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

DType parse_dtype(const std::string& s, const std::string& where) {
    if (s == "F32") return DType::F32;
    if (s == "F16") return DType::F16;
    if (s == "BF16") return DType::BF16;
    throw Error(fmt::format("{}: dtype {}: not supported (F32, F16 and BF16 are)", where, s));
}

}  // namespace

const char* dtype_name(DType t) { return t == DType::F32 ? "F32" : t == DType::F16 ? "F16" : "BF16"; }

uint64_t Tensor::elements() const {
    uint64_t n = 1;
    for (const uint64_t d : shape) n *= d;
    return n;
}

float Tensor::at(uint64_t i) const {
    float v = 0;
    read(i, 1, &v);
    return v;
}

void Tensor::read(uint64_t first, uint64_t n, float* out) const {
    const uint8_t* p = data.data() + first * dtype_bytes(dtype);
    if (dtype == DType::F32) {
        std::memcpy(out, p, n * 4);
        return;
    }
    for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = dtype == DType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
}

File::File(const std::string& path) : path_(path), map_(path) { parse_header(map_.bytes()); }

File File::parse(const std::string& name, std::span<const uint8_t> bytes) {
    File f;
    f.path_ = name;
    f.parse_header(bytes);
    return f;
}

void File::parse_header(std::span<const uint8_t> bytes) {
    if (bytes.size() < 8) throw Error(fmt::format("{}: not a safetensors file (shorter than its 8-byte header length)", path_));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[size_t(i)];
    if (n > kMaxHeader || n > bytes.size() - 8)
        throw Error(fmt::format("{}: header length {} does not fit in the file ({} bytes): truncated or not safetensors", path_, n, bytes.size()));
    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), size_t(n));
    const json h = json::parse(text, nullptr, false);
    if (!h.is_object()) throw Error(fmt::format("{}: the header is not a JSON object", path_));
    const std::span<const uint8_t> data = bytes.subspan(8 + size_t(n));
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, t] : h.items()) {
        if (name == "__metadata__") continue;
        const std::string where = fmt::format("{}: {}", path_, name);
        if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") || !t["shape"].is_array() ||
            !t.contains("data_offsets") || !t["data_offsets"].is_array() || t["data_offsets"].size() != 2)
            throw Error(fmt::format("{}: needs dtype, shape and data_offsets [begin, end]", where));
        Tensor x;
        x.name = name;
        x.dtype = parse_dtype(t["dtype"].get<std::string>(), where);
        uint64_t count = 1;
        for (const json& d : t["shape"]) {
            if (!d.is_number_unsigned()) throw Error(fmt::format("{}: shape: dimensions must be non-negative integers", where));
            const uint64_t v = d.get<uint64_t>();
            if (v != 0 && count > (uint64_t(1) << 60) / v) throw Error(fmt::format("{}: shape too large", where));
            count *= v;
            x.shape.push_back(v);
        }
        const json& off = t["data_offsets"];
        if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) throw Error(fmt::format("{}: data_offsets must be integers", where));
        const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
        if (begin > end || end > data.size())
            throw Error(fmt::format("{}: data_offsets [{}, {}] outside the file's {} data bytes (truncated?)", where, begin, end, data.size()));
        if (end - begin != count * dtype_bytes(x.dtype))
            throw Error(fmt::format("{}: {} bytes for {} {} values", where, end - begin, count, dtype_name(x.dtype)));
        x.data = data.subspan(size_t(begin), size_t(end - begin));
        ranges.emplace_back(begin, end);
        tensors_.push_back(std::move(x));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second) throw Error(fmt::format("{}: two tensors share bytes", path_));
    std::sort(tensors_.begin(), tensors_.end(), [](const Tensor& a, const Tensor& b) { return a.name < b.name; });
}

const Tensor* File::find(std::string_view name) const {
    const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name, [](const Tensor& t, std::string_view n) { return t.name < n; });
    return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

void write(const std::string& path, const std::vector<Output>& tensors) {
    json h = json::object();
    uint64_t offset = 0;
    for (const Output& t : tensors) {
        const uint64_t bytes = t.values.size() * dtype_bytes(t.dtype);
        h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    h["__metadata__"] = {{"format", "pt"}};
    std::string header = h.dump();
    while (header.size() % 8) header += ' ';  // the data then starts 8-aligned, as the reference writer does
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write {}", path));
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
    out << header;
    for (const Output& t : tensors) {
        for (const float v : t.values) {
            if (t.dtype == DType::F32) {
                out.write(reinterpret_cast<const char*>(&v), 4);
            } else {
                const uint16_t h16 = t.dtype == DType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
                out.write(reinterpret_cast<const char*>(&h16), 2);
            }
        }
    }
    if (!out) throw Error(fmt::format("cannot write {}", path));
}

}  // namespace celer::safetensors
