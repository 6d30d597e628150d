
#include <fmt/format.h>

#include "cli/commands.h"
#include "model/model.h"
#include "util/error.h"
#include "util/text_file.h"

namespace celer::cli {

int cmd_tokenize(Args& a) {
    const auto path = a.value({"-m", "--model"});
    const auto file = a.value({"--file", "-f"});
    const bool special = a.flag({"--special"});
    const bool bos = a.flag({"--bos"});
    const auto pos = a.positionals();
    a.finish();
    if (!path) throw Error("tokenize needs -m FILE");
    std::string text;
    if (file) {
        text = read_text_file(*file);
    } else if (pos.size() == 1) {
        text = pos[0];
    } else {
        throw Error("tokenize needs one TEXT argument or --file PATH");
    }
    // Only the tokenizer is needed: a vocabulary-only GGUF or a tokenizer.json works too.
    const Vocab v = Vocab::load_any(*path);
    std::vector<TokenId> ids;
    if (bos && v.bos() >= 0) ids.push_back(v.bos());
    const auto body = v.encode(text, special);
    ids.insert(ids.end(), body.begin(), body.end());
    fmt::print("{}\n", fmt::join(ids, " "));
    return 0;
}

}  // namespace celer::cli
