#include "cli/args.h"

#include <cctype>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::cli {

Args::Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) args_.emplace_back(argv[i]);
    used_.assign(args_.size(), false);
}

std::optional<std::string> Args::value(std::initializer_list<std::string_view> names) {
    std::optional<std::string> out;
    for (size_t i = 0; i < args_.size(); ++i) {
        for (auto n : names) {
            if (used_[i] || args_[i] != n) continue;
            if (i + 1 >= args_.size()) throw Error(fmt::format("option {} needs a value", n));
            used_[i] = used_[i + 1] = true;
            out = args_[i + 1];
        }
    }
    return out;
}

std::string Args::value_or(std::initializer_list<std::string_view> names, std::string def) {
    auto v = value(names);
    return v ? *v : def;
}

long long Args::int_or(std::initializer_list<std::string_view> names, long long def, long long lo, long long hi) {
    const auto v = value(names);
    if (!v) return def;
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v->c_str(), &end, 10);
    if (errno || end == v->c_str() || *end) throw Error(fmt::format("option {}: '{}' is not an integer", *names.begin(), *v));
    if (x < lo || x > hi) throw Error(fmt::format("option {}: {} is outside [{}, {}]", *names.begin(), x, lo, hi));
    return x;
}

double Args::num_or(std::initializer_list<std::string_view> names, double def, double lo, double hi) {
    const auto v = value(names);
    if (!v) return def;
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v->c_str(), &end);
    if (errno || end == v->c_str() || *end) throw Error(fmt::format("option {}: '{}' is not a number", *names.begin(), *v));
    if (!(x >= lo && x <= hi)) throw Error(fmt::format("option {}: {} is outside [{}, {}]", *names.begin(), x, lo, hi));
    return x;
}

unsigned long long Args::bytes_or(std::initializer_list<std::string_view> names, unsigned long long def) {
    const auto v = value(names);
    if (!v) return def;
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v->c_str(), &end);
    std::string unit(end ? end : "");
    for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
    double scale = 0;
    if (unit.empty() || unit == "B") scale = 1;
    else if (unit == "K" || unit == "KB" || unit == "KIB") scale = 0x1p10;
    else if (unit == "M" || unit == "MB" || unit == "MIB") scale = 0x1p20;
    else if (unit == "G" || unit == "GB" || unit == "GIB") scale = 0x1p30;
    else if (unit == "T" || unit == "TB" || unit == "TIB") scale = 0x1p40;
    if (errno || end == v->c_str() || scale == 0 || !(x >= 0) || x * scale > 0x1p60)
        throw Error(fmt::format("option {}: '{}' is not a size (e.g. 512M, 4GiB)", *names.begin(), *v));
    return static_cast<unsigned long long>(x * scale);
}

bool Args::flag(std::initializer_list<std::string_view> names) {
    bool found = false;
    for (size_t i = 0; i < args_.size(); ++i)
        for (auto n : names)
            if (!used_[i] && args_[i] == n) used_[i] = found = true;
    return found;
}

std::vector<std::string> Args::positionals() {
    std::vector<std::string> out;
    for (size_t i = 0; i < args_.size(); ++i) {
        if (used_[i]) continue;
        if (args_[i].size() > 1 && args_[i][0] == '-' && args_[i] != "--") continue;  // an unknown option: finish() reports it
        used_[i] = true;
        out.push_back(args_[i]);
    }
    return out;
}

void Args::finish() {
    for (size_t i = 0; i < args_.size(); ++i)
        if (!used_[i]) throw Error(fmt::format("unknown option or extra argument '{}' (see celer help)", args_[i]));
}

}  // namespace celer::cli
