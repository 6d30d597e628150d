// SHA-256 (FIPS 180-4), streaming: the hub publishes each LFS file's sha256 as its object id, and
// a downloaded model is checked against it before it replaces anything in the cache.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace celer::hub {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t n);
    void update(std::string_view s) { update(s.data(), s.size()); }
    // The digest as 64 lowercase hex digits. The object is spent afterwards.
    std::string hex_digest();

private:
    void block(const uint8_t* p);

    std::array<uint32_t, 8> h_;
    std::array<uint8_t, 64> buf_{};
    size_t buf_len_ = 0;
    uint64_t total_ = 0;  // bytes hashed so far
};

// The digest of a whole file; throws celer::Error if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace celer::hub
