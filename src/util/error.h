// One exception type for every failure a user can cause (bad file, bad flag, bad request).
// Messages are one line: "<where>: <field>: <problem>", so a caller can print them as they are.
#pragma once

#include <stdexcept>
#include <string>

namespace celer {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace celer
