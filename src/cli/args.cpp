#include "cli/args.h"

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
