// Builds GGUF bytes field by field, so that tests can write exactly the malformed file they
// need (the library's Writer only writes valid ones).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace celer::test {

struct GgufBytes {
    std::vector<uint8_t> b;

    template <class T>
    GgufBytes& put(T v) {
        const size_t at = b.size();
        b.resize(at + sizeof(T));
        std::memcpy(b.data() + at, &v, sizeof(T));
        return *this;
    }
    GgufBytes& str(std::string_view s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    GgufBytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        put<uint32_t>(0x46554747);
        put<uint32_t>(version);
        put<uint64_t>(n_tensors);
        return put<uint64_t>(n_kv);
    }
    GgufBytes& kv_u32(std::string_view key, uint32_t v) {
        str(key);
        put<uint32_t>(4);
        return put<uint32_t>(v);
    }
    GgufBytes& kv_str(std::string_view key, std::string_view v) {
        str(key);
        put<uint32_t>(8);
        return str(v);
    }
    GgufBytes& tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
        str(name);
        put<uint32_t>(uint32_t(ne.size()));
        for (auto d : ne) put<uint64_t>(d);
        put<uint32_t>(type);
        return put<uint64_t>(offset);
    }
    GgufBytes& align(size_t a = 32) {
        b.resize((b.size() + a - 1) / a * a, 0);
        return *this;
    }
    GgufBytes& zeros(size_t n) {
        b.resize(b.size() + n, 0);
        return *this;
    }
};

}  // namespace celer::test
