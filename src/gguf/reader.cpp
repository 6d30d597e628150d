#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "gguf/gguf.h"
#include "util/error.h"

namespace celer::gguf {
namespace {

constexpr int kMaxArrayDepth = 3;
constexpr uint64_t kMaxNameLen = 256;  // tensor names; real ones are under 64 bytes

size_t fixed_size(ValueType t) {
    switch (t) {
        case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
        case ValueType::U16: case ValueType::I16: return 2;
        case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
        case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
        default: return 0;
    }
}

bool known_value_type(uint32_t t) { return t <= uint32_t(ValueType::F64); }

// Bounded little-endian cursor over the mapping. Every read checks the remaining length.
class Cursor {
public:
    Cursor(const File& f, std::span<const uint8_t> b) : file_(f), bytes_(b) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return bytes_.size() - pos_; }
    const uint8_t* here() const { return bytes_.data() + pos_; }

    template <class T>
    T read(std::string_view field) {
        if (remaining() < sizeof(T)) file_.fail(field, fmt::format("file ends at byte {} inside this field (truncated)", bytes_.size()));
        T v;
        std::memcpy(&v, here(), sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string_view read_string(std::string_view field) {
        const uint64_t len = read<uint64_t>(field);
        if (len > remaining())
            file_.fail(field, fmt::format("string length {} exceeds the {} bytes left in the file", len, remaining()));
        std::string_view s(reinterpret_cast<const char*>(here()), size_t(len));
        pos_ += size_t(len);
        return s;
    }

    void skip(uint64_t n, std::string_view field) {
        if (n > remaining()) file_.fail(field, fmt::format("needs {} bytes but only {} are left (truncated)", n, remaining()));
        pos_ += size_t(n);
    }

private:
    const File& file_;
    std::span<const uint8_t> bytes_;
    size_t pos_ = 0;
};

void read_value(Cursor& c, const File& f, ValueType type, Value& v, const std::string& field, int depth) {
    v.type = type;
    switch (type) {
        case ValueType::U8: v.num.u = c.read<uint8_t>(field); break;
        case ValueType::I8: v.num.i = c.read<int8_t>(field); break;
        case ValueType::U16: v.num.u = c.read<uint16_t>(field); break;
        case ValueType::I16: v.num.i = c.read<int16_t>(field); break;
        case ValueType::U32: v.num.u = c.read<uint32_t>(field); break;
        case ValueType::I32: v.num.i = c.read<int32_t>(field); break;
        case ValueType::U64: v.num.u = c.read<uint64_t>(field); break;
        case ValueType::I64: v.num.i = c.read<int64_t>(field); break;
        case ValueType::F32: v.num.f = c.read<float>(field); break;
        case ValueType::F64: v.num.f = c.read<double>(field); break;
        case ValueType::BOOL: {
            const uint8_t b = c.read<uint8_t>(field);
            if (b > 1) f.fail(field, fmt::format("bool value {} is neither 0 nor 1", b));
            v.num.b = b != 0;
            break;
        }
        case ValueType::STRING: v.str = c.read_string(field); break;
        case ValueType::ARRAY: {
            if (depth >= kMaxArrayDepth) f.fail(field, "arrays nested too deeply");
            const uint32_t et = c.read<uint32_t>(field + ".type");
            if (!known_value_type(et)) f.fail(field, fmt::format("unknown array element type {}", et));
            v.elem_type = ValueType(et);
            v.count = c.read<uint64_t>(field + ".count");
            // Each element occupies at least this many bytes; a count that cannot fit in what is
            // left of the file is rejected before anything is allocated for it.
            const size_t min_elem = v.elem_type == ValueType::STRING  ? 8
                                    : v.elem_type == ValueType::ARRAY ? 12
                                                                      : fixed_size(v.elem_type);
            if (v.count > c.remaining() / min_elem)
                f.fail(field, fmt::format("array count {} cannot fit in the {} bytes left", v.count, c.remaining()));
            if (v.elem_type == ValueType::STRING) {
                v.strings.reserve(size_t(v.count));
                for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(c.read_string(field));
            } else if (v.elem_type == ValueType::ARRAY) {
                v.items.resize(size_t(v.count));
                for (uint64_t k = 0; k < v.count; ++k) read_value(c, f, ValueType::ARRAY, v.items[k], field, depth + 1);
            } else {
                v.raw = c.here();
                c.skip(v.count * min_elem, field);
                if (v.elem_type == ValueType::BOOL)
                    for (uint64_t k = 0; k < v.count; ++k)
                        if (v.raw[k] > 1) f.fail(field, fmt::format("bool element {} is neither 0 nor 1", k));
            }
            break;
        }
    }
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out) { return __builtin_mul_overflow(a, b, &out); }

}  // namespace

std::string_view value_type_name(ValueType t) {
    static constexpr std::string_view kNames[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                  "bool", "string", "array", "u64", "i64", "f64"};
    return uint32_t(t) < std::size(kNames) ? kNames[uint32_t(t)] : "?";
}

bool Value::is_integer() const {
    switch (type) {
        case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
        case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64: return true;
        default: return false;
    }
}

void File::fail(std::string_view field, std::string_view problem) const {
    throw Error(fmt::format("{}: {}: {}", name_, field, problem));
}

File File::open(const std::string& path) {
    File f;
    f.map_ = std::make_shared<MappedFile>(path);
    f.name_ = path;
    f.bytes_ = f.map_->bytes();
    f.parse_all();
    return f;
}

File File::parse(std::string name, std::span<const uint8_t> bytes) {
    File f;
    f.name_ = std::move(name);
    f.bytes_ = bytes;
    f.parse_all();
    return f;
}

void File::parse_all() {
    Cursor c(*this, bytes_);
    if (c.remaining() < 4) fail("header.magic", fmt::format("file is {} bytes, too short to be GGUF", bytes_.size()));
    const uint32_t magic = c.read<uint32_t>("header.magic");
    if (magic != kMagic) fail("header.magic", fmt::format("not a GGUF file (magic 0x{:08x}, expected \"GGUF\")", magic));
    version_ = c.read<uint32_t>("header.version");
    if (version_ == 1) fail("header.version", "GGUF v1 is not supported (re-convert the model to v3)");
    if (version_ > 0xffff && (version_ >> 24) <= 3)
        fail("header.version", "big-endian GGUF is not supported");
    if (version_ != 2 && version_ != 3) fail("header.version", fmt::format("unsupported version {}", version_));
    const uint64_t n_tensors = c.read<uint64_t>("header.n_tensors");
    const uint64_t n_kv = c.read<uint64_t>("header.n_kv");
    // Smallest encodings: a KV is key length (8) + 1 byte key + type (4) + 1 byte value; a tensor
    // info is name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
    if (n_kv > c.remaining() / 14) fail("header.n_kv", fmt::format("{} entries cannot fit in a {}-byte file", n_kv, bytes_.size()));
    if (n_tensors > c.remaining() / 32)
        fail("header.n_tensors", fmt::format("{} tensors cannot fit in a {}-byte file", n_tensors, bytes_.size()));

    kv_.reserve(size_t(n_kv));
    for (uint64_t k = 0; k < n_kv; ++k) {
        const std::string where = fmt::format("kv[{}]", k);
        const std::string_view key = c.read_string(where + ".key");
        const std::string field = fmt::format("kv[{}] '{}'", k, key);
        if (key.empty()) fail(where + ".key", "empty key");
        const uint32_t type = c.read<uint32_t>(field + ".type");
        if (!known_value_type(type)) fail(field, fmt::format("unknown value type {}", type));
        Value v;
        read_value(c, *this, ValueType(type), v, field, 0);
        if (!kv_index_.emplace(key, kv_.size()).second) fail(field, "duplicate key");
        kv_.emplace_back(std::string(key), std::move(v));
    }
    kv_end_ = c.pos();
    // The index was keyed by views into the mapping; re-key it by the owned strings.
    kv_index_.clear();
    for (size_t k = 0; k < kv_.size(); ++k) kv_index_.emplace(kv_[k].first, k);

    if (const Value* a = find("general.alignment")) {
        if (!a->is_integer() || a->num.u == 0 || a->num.u > (1u << 30) || (a->num.u & (a->num.u - 1)) != 0)
            fail("general.alignment", "must be a power of two (u32)");
        alignment_ = uint32_t(a->num.u);
    }

    tensors_.reserve(size_t(n_tensors));
    for (uint64_t k = 0; k < n_tensors; ++k) {
        TensorInfo t;
        const std::string where = fmt::format("tensor[{}]", k);
        const std::string_view name = c.read_string(where + ".name");
        if (name.empty() || name.size() > kMaxNameLen) fail(where + ".name", fmt::format("name length {} is out of range", name.size()));
        t.name = std::string(name);
        const std::string field = fmt::format("tensor '{}'", t.name);
        const uint32_t n_dims = c.read<uint32_t>(field + ".n_dims");
        if (n_dims == 0 || n_dims > kMaxDims) fail(field + ".n_dims", fmt::format("{} dimensions (1 to {} allowed)", n_dims, kMaxDims));
        t.n_dims = int(n_dims);
        uint64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            t.ne[d] = c.read<uint64_t>(field + ".shape");
            if (t.ne[d] == 0) fail(field + ".shape", fmt::format("dimension {} is zero", d));
            if (t.ne[d] > (uint64_t(1) << 62) || mul_overflows(n_elem, t.ne[d], n_elem) || n_elem > (uint64_t(1) << 62))
                fail(field + ".shape", "element count overflows");
        }
        const uint32_t raw_type = c.read<uint32_t>(field + ".type");
        const auto tt = find_type(raw_type);
        if (!tt) {
            const std::string_view known = ggml_type_name(raw_type);
            if (!known.empty()) fail(field + ".type", fmt::format("tensor type {} ({}) is not supported", known, raw_type));
            fail(field + ".type", fmt::format("unknown tensor type {}", raw_type));
        }
        t.type = tt->type;
        if (t.ne[0] % tt->block_elems != 0)
            fail(field + ".shape", fmt::format("row length {} is not a multiple of the {} block size {}", t.ne[0], tt->name, tt->block_elems));
        if (mul_overflows(n_elem / tt->block_elems, tt->block_bytes, t.n_bytes)) fail(field + ".shape", "byte size overflows");
        t.offset = c.read<uint64_t>(field + ".offset");
        if (t.offset % alignment_ != 0)
            fail(field + ".offset", fmt::format("offset {} is not a multiple of the alignment {}", t.offset, alignment_));
        if (!tensor_index_.emplace(name, tensors_.size()).second) fail(field, "duplicate tensor name");
        tensors_.push_back(std::move(t));
    }
    tensor_index_.clear();
    for (size_t k = 0; k < tensors_.size(); ++k) tensor_index_.emplace(tensors_[k].name, k);

    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    if (tensors_.empty()) return;
    if (data_offset_ > bytes_.size())
        fail("data", fmt::format("data section would start at byte {} past the end of the {}-byte file (truncated)", data_offset_, bytes_.size()));
    const uint64_t data_size = bytes_.size() - data_offset_;

    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(tensors_.size());
    for (auto& t : tensors_) {
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            fail(fmt::format("tensor '{}'.offset", t.name),
                 fmt::format("data [{}, +{}) runs past the end of the file's {}-byte data section (truncated?)", t.offset, t.n_bytes, data_size));
        t.data = bytes_.data() + data_offset_ + t.offset;
        by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < by_offset.size(); ++k) {
        const TensorInfo& prev = *by_offset[k - 1];
        if (prev.offset + prev.n_bytes > by_offset[k]->offset)
            fail(fmt::format("tensor '{}'.offset", by_offset[k]->name), fmt::format("data overlaps tensor '{}'", prev.name));
    }
}

const Value* File::find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<uint64_t> File::get_uint(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer()) fail(key, fmt::format("expected an integer, found {}", value_type_name(v->type)));
    const bool is_signed = v->type == ValueType::I8 || v->type == ValueType::I16 || v->type == ValueType::I32 || v->type == ValueType::I64;
    if (is_signed && v->num.i < 0) fail(key, fmt::format("negative value {}", v->num.i));
    return v->num.u;
}

std::optional<double> File::get_float(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_float()) return v->num.f;
    if (v->is_integer()) {
        const bool is_signed = v->type == ValueType::I8 || v->type == ValueType::I16 || v->type == ValueType::I32 || v->type == ValueType::I64;
        return is_signed ? double(v->num.i) : double(v->num.u);
    }
    fail(key, fmt::format("expected a number, found {}", value_type_name(v->type)));
}

std::optional<bool> File::get_bool(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != ValueType::BOOL) fail(key, fmt::format("expected a bool, found {}", value_type_name(v->type)));
    return v->num.b;
}

std::optional<std::string_view> File::get_string(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != ValueType::STRING) fail(key, fmt::format("expected a string, found {}", value_type_name(v->type)));
    return v->str;
}

std::vector<std::string_view> File::get_string_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return {};
    if (v->type != ValueType::ARRAY || v->elem_type != ValueType::STRING) fail(key, "expected an array of strings");
    return v->strings;
}

std::vector<float> File::get_f32_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return {};
    if (v->type != ValueType::ARRAY || v->elem_type != ValueType::F32) fail(key, "expected an array of f32");
    std::vector<float> out(size_t(v->count));
    if (!out.empty()) std::memcpy(out.data(), v->raw, out.size() * sizeof(float));
    return out;
}

std::vector<int32_t> File::get_i32_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return {};
    if (v->type != ValueType::ARRAY || (v->elem_type != ValueType::I32 && v->elem_type != ValueType::U32))
        fail(key, "expected an array of i32");
    std::vector<int32_t> out(size_t(v->count));
    if (!out.empty()) std::memcpy(out.data(), v->raw, out.size() * sizeof(int32_t));
    return out;
}

}  // namespace celer::gguf
