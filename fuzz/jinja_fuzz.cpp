// libFuzzer target: arbitrary bytes as a chat template, parsed and rendered against a small
// conversation with tools. Chat templates come from model files, so any crash, sanitizer
// report, hang (libFuzzer's -timeout) or exception other than celer::Error is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "util/error.h"

namespace {

const nlohmann::ordered_json& context() {
    static const auto ctx = nlohmann::ordered_json::parse(R"({
      "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true,
      "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                 "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}],
      "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi <think>\n</think> \u00e9"},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "abcdefghi", "type": "function", "function": {"name": "f", "arguments": {"x": "1"}}}]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "42"},
        {"role": "assistant", "content": "done"}]})");
    return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view source(reinterpret_cast<const char*>(data), size);
    try {
        const celer::chat::Template t(source);
        (void)t.render(context());
    } catch (const celer::Error&) {
    }
    return 0;
}
