// celer convert DIR [-o OUT.gguf] [--type f16|bf16|f32|q8_0]
#include <fmt/format.h>

#include "cli/commands.h"
#include "tools/convert.h"
#include "util/error.h"

namespace celer::cli {

int cmd_convert(Args& a) {
    convert::Options opt;
    opt.out = a.value_or({"-o", "--out"}, "");
    const std::string type = a.value_or({"--type", "--outtype"}, "f16");
    const auto t = parse_type_name(type);
    if (!t) throw Error(fmt::format("--type {}: expected f32, f16, bf16 or q8_0", type));
    opt.type = *t;
    const std::vector<std::string> pos = a.positionals();
    a.finish();
    if (pos.size() != 1) throw Error("usage: celer convert DIR [-o OUT.gguf] [--type f16|bf16|f32|q8_0]");
    opt.dir = pos[0];
    const std::string out = convert::convert_hf(opt, [](std::string_view line) { fmt::print(stderr, "{}\n", line); });
    fmt::print("{}\n", out);
    return 0;
}

}  // namespace celer::cli
