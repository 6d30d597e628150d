// Reads a whole file into a string, with the error every command reports for a missing file.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "util/error.h"

namespace celer {

inline std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(fmt::format("{}: cannot open", path));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace celer
