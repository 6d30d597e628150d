#include "gguf/writer.h"

#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::gguf {

namespace {

// resize + memcpy rather than insert: GCC 12 misreports vector::insert of a few bytes as an
// overflow (-Wstringop-overflow) at -O3.
void append(std::vector<uint8_t>& out, const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, p, n);
}

}  // namespace

template <class T>
void Writer::put(T v) {
    append(kv_, &v, sizeof(T));
}

void Writer::put_string(std::string_view s) {
    put<uint64_t>(s.size());
    append(kv_, s.data(), s.size());
}

void Writer::key(std::string_view k, ValueType t) {
    put_string(k);
    put<uint32_t>(uint32_t(t));
    ++n_kv_;
}

void Writer::set_u32(std::string_view k, uint32_t v) { key(k, ValueType::U32), put(v); }
void Writer::set_i32(std::string_view k, int32_t v) { key(k, ValueType::I32), put(v); }
void Writer::set_u64(std::string_view k, uint64_t v) { key(k, ValueType::U64), put(v); }
void Writer::set_f32(std::string_view k, float v) { key(k, ValueType::F32), put(v); }
void Writer::set_bool(std::string_view k, bool v) { key(k, ValueType::BOOL), put<uint8_t>(v ? 1 : 0); }
void Writer::set_string(std::string_view k, std::string_view v) { key(k, ValueType::STRING), put_string(v); }

void Writer::set_string_array(std::string_view k, std::span<const std::string_view> v) {
    key(k, ValueType::ARRAY);
    put<uint32_t>(uint32_t(ValueType::STRING));
    put<uint64_t>(v.size());
    for (auto s : v) put_string(s);
}

void Writer::set_f32_array(std::string_view k, std::span<const float> v) {
    key(k, ValueType::ARRAY);
    put<uint32_t>(uint32_t(ValueType::F32));
    put<uint64_t>(v.size());
    for (float f : v) put(f);
}

void Writer::set_i32_array(std::string_view k, std::span<const int32_t> v) {
    key(k, ValueType::ARRAY);
    put<uint32_t>(uint32_t(ValueType::I32));
    put<uint64_t>(v.size());
    for (int32_t i : v) put(i);
}

void Writer::put_value(const Value& v) {
    switch (v.type) {
        case ValueType::U8: put<uint8_t>(uint8_t(v.num.u)); break;
        case ValueType::I8: put<int8_t>(int8_t(v.num.i)); break;
        case ValueType::U16: put<uint16_t>(uint16_t(v.num.u)); break;
        case ValueType::I16: put<int16_t>(int16_t(v.num.i)); break;
        case ValueType::U32: put<uint32_t>(uint32_t(v.num.u)); break;
        case ValueType::I32: put<int32_t>(int32_t(v.num.i)); break;
        case ValueType::U64: put<uint64_t>(v.num.u); break;
        case ValueType::I64: put<int64_t>(v.num.i); break;
        case ValueType::F32: put<float>(float(v.num.f)); break;
        case ValueType::F64: put<double>(v.num.f); break;
        case ValueType::BOOL: put<uint8_t>(v.num.b ? 1 : 0); break;
        case ValueType::STRING: put_string(v.str); break;
        case ValueType::ARRAY: {
            put<uint32_t>(uint32_t(v.elem_type));
            put<uint64_t>(v.count);
            if (v.elem_type == ValueType::STRING) {
                for (auto s : v.strings) put_string(s);
            } else if (v.elem_type == ValueType::ARRAY) {
                for (const auto& item : v.items) put_value(item);
            } else {
                const size_t esz = v.elem_type == ValueType::U8 || v.elem_type == ValueType::I8 || v.elem_type == ValueType::BOOL ? 1
                                   : v.elem_type == ValueType::U16 || v.elem_type == ValueType::I16                            ? 2
                                   : v.elem_type == ValueType::U64 || v.elem_type == ValueType::I64 || v.elem_type == ValueType::F64 ? 8
                                                                                                                                     : 4;
                append(kv_, v.raw, v.count * esz);
            }
            break;
        }
    }
}

void Writer::copy_value(std::string_view k, const Value& v) {
    key(k, v.type);
    put_value(v);
}

size_t Writer::add_tensor(std::string name, TensorType type, std::vector<uint64_t> ne) {
    const auto& tt = traits(type);
    if (ne.empty() || ne.size() > size_t(kMaxDims)) throw Error(fmt::format("{}: bad rank {}", name, ne.size()));
    if (ne[0] % tt.block_elems != 0)
        throw Error(fmt::format("{}: row length {} is not a multiple of the {} block size {}", name, ne[0], tt.name, tt.block_elems));
    uint64_t n = 1;
    for (auto d : ne) n *= d;
    const uint64_t bytes = n / tt.block_elems * tt.block_bytes;
    tensors_.push_back({std::move(name), type, std::move(ne), bytes, data_size_});
    data_size_ += (bytes + kDefaultAlignment - 1) / kDefaultAlignment * kDefaultAlignment;
    return tensors_.size() - 1;
}

std::vector<uint8_t> Writer::encode_header() const {
    std::vector<uint8_t> out;
    auto put_raw = [&](const void* p, size_t n) { append(out, p, n); };
    auto put_u32 = [&](uint32_t v) { put_raw(&v, 4); };
    auto put_u64 = [&](uint64_t v) { put_raw(&v, 8); };
    put_u32(kMagic);
    put_u32(3);
    put_u64(tensors_.size());
    put_u64(n_kv_);
    append(out, kv_.data(), kv_.size());
    for (const auto& t : tensors_) {
        put_u64(t.name.size());
        put_raw(t.name.data(), t.name.size());
        put_u32(uint32_t(t.ne.size()));
        for (auto d : t.ne) put_u64(d);
        put_u32(uint32_t(t.type));
        put_u64(t.offset);
    }
    out.resize((out.size() + kDefaultAlignment - 1) / kDefaultAlignment * kDefaultAlignment, 0);
    return out;
}

void Writer::write(const std::string& path, const Fill& fill) const {
    const std::string tmp = path + ".partial";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(fmt::format("{}: cannot create: {}", tmp, std::strerror(errno)));
    auto fail = [&](const std::string& what) {
        std::fclose(f);
        std::remove(tmp.c_str());
        throw Error(fmt::format("{}: {}", path, what));
    };
    const auto header = encode_header();
    if (std::fwrite(header.data(), 1, header.size(), f) != header.size()) fail("write failed");
    std::vector<uint8_t> buf;
    static const uint8_t kZeros[kDefaultAlignment] = {};
    for (size_t i = 0; i < tensors_.size(); ++i) {
        buf.assign(size_t(tensors_[i].n_bytes), 0);
        try {
            fill(i, buf);
        } catch (const std::exception& e) {
            fail(e.what());
        }
        if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) fail("write failed (disk full?)");
        const size_t pad = size_t((kDefaultAlignment - buf.size() % kDefaultAlignment) % kDefaultAlignment);
        if (pad && std::fwrite(kZeros, 1, pad, f) != pad) fail("write failed");
    }
    if (std::fclose(f) != 0) {
        std::remove(tmp.c_str());
        throw Error(fmt::format("{}: close failed", path));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error(fmt::format("{}: cannot rename from {}: {}", path, tmp, std::strerror(errno)));
    }
}

}  // namespace celer::gguf
