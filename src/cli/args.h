// A small command-line parser: options are looked up by name as a command needs them, and
// whatever is left over at the end is reported as an error rather than silently ignored.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace celer::cli {

class Args {
public:
    Args(int argc, char** argv, int first);

    // The value after any of `names` (last occurrence wins); throws if the value is missing.
    std::optional<std::string> value(std::initializer_list<std::string_view> names);
    std::string value_or(std::initializer_list<std::string_view> names, std::string def);
    long long int_or(std::initializer_list<std::string_view> names, long long def, long long lo, long long hi);
    double num_or(std::initializer_list<std::string_view> names, double def, double lo, double hi);
    // A size in bytes: a number with an optional unit, K/M/G/T (powers of 1024, as KiB, MiB, ...;
    // "KB", "MiB" and "GiB" spellings accepted) or none for bytes: "512M", "4GiB", "1.5G".
    unsigned long long bytes_or(std::initializer_list<std::string_view> names, unsigned long long def);
    bool flag(std::initializer_list<std::string_view> names);
    // Arguments that are not options, in order. Call after every option was looked up.
    std::vector<std::string> positionals();
    // Throws celer::Error naming the first option nobody asked for.
    void finish();

private:
    std::vector<std::string> args_;
    std::vector<bool> used_;
};

}  // namespace celer::cli
