// Read-only memory mapping of a whole file. Model weights are used in place from the mapping,
// so loading a 7B model costs page-table entries, not a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace celer {

class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path);  // throws celer::Error
    ~MappedFile();
    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const uint8_t> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace celer
