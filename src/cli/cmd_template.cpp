// celer template: renders a conversation through a model's chat template (the Jinja in its
// GGUF's tokenizer.chat_template, or tokenizer_config.json beside a tokenizer.json), printing
// the prompt text or its token ids. What a server will send the model, made visible.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "tokenizer/vocab.h"
#include "tokenizer/vocab_spec.h"
#include "util/error.h"
#include "util/text_file.h"

namespace celer::cli {
int cmd_template(Args& a) {
    const auto model = a.value({"-m", "--model"});
    const auto messages_path = a.value({"--messages"});
    const auto template_path = a.value({"--template"});
    const bool no_gen = a.flag({"--no-generation-prompt"});
    const bool ids = a.flag({"--ids"});
    a.finish();
    if (!model || !messages_path) throw Error("template needs -m MODEL (GGUF or tokenizer.json) and --messages FILE.json");

    std::string source;
    if (template_path) {
        source = read_text_file(*template_path);
    } else if (model->ends_with(".json")) {
        source = vocab_spec_from_hf(*model).chat_template;
    } else {
        source = std::string(gguf::File::open(*model).get_string("tokenizer.chat_template").value_or(""));
    }
    if (source.empty()) throw Error(fmt::format("{}: no chat template (tokenizer.chat_template); give --template FILE", *model));
    const Vocab vocab = Vocab::load_any(*model);

    // The file is either a list of messages or an object with "messages" (and "tools", ...).
    nlohmann::ordered_json context;
    try {
        const auto j = nlohmann::ordered_json::parse(read_text_file(*messages_path));
        if (j.is_array()) context["messages"] = j;
        else if (j.is_object() && j.contains("messages")) context = j;
        else throw Error(fmt::format("{}: expected a list of messages or an object with \"messages\"", *messages_path));
    } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("{}: invalid JSON: {}", *messages_path, e.what()));
    }
    context["add_generation_prompt"] = !no_gen;
    if (vocab.bos() >= 0) context["bos_token"] = std::string(vocab.token(vocab.bos()));
    if (vocab.eos() >= 0) context["eos_token"] = std::string(vocab.token(vocab.eos()));

    const std::string prompt = chat::Template(source).render(context);
    if (ids) {
        fmt::print("{}\n", fmt::join(vocab.encode(prompt, true), " "));
    } else {
        std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    }
    return 0;
}

}  // namespace celer::cli
