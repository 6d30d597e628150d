#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "hub/hub.h"
#include "util/error.h"

namespace {

constexpr std::string_view kUsage = R"(celer: fast local inference for code models (GGUF)

usage: celer COMMAND [options]

commands:
  run       -m FILE -p TEXT [-n N] [--temp T] [--seed S] [-t THREADS] [--top-k K] [--top-p P]
            [--min-p P] [--repeat-penalty R] [--presence-penalty P] [--frequency-penalty F]
            [-c CTX] [--kernels NAME] [--kv-type f16|f32|q8_0|q8_0-q4_0] [--file PROMPT_FILE]
            [--spec off|suffix|ngram|model] [--draft N] [--draft-fixed] [--draft-model FILE]
            [--rope-scaling none|linear|ntk|yarn] [--rope-scale S] [--yarn-orig-ctx N] [--f16-as-bf16]
            Generate a continuation; only the generated text goes to stdout. --spec guesses
            tokens by copying from the text so far (or with a small draft model of the same
            vocabulary) and lets the model check them (lossless).
            Without -m, a small synthetic demo model (random weights) is used.
  info      -m FILE [--rope-scaling yarn --rope-scale S ...]
            Architecture, shapes, tensor types, bytes read per token, KV cache per context.
  tokenize  -m FILE (TEXT | --file PATH) [--special] [--bos]
            Token ids separated by spaces.
  bench     -m FILE [-t N] [--prompt N] [--gen N] [--depth N | --depths 0,8192,32768] [--reps N] [--kv-type f16|f32|q8_0|q8_0-q4_0] [--json]
            [--verify] [--replay PAIRS_DIR [--spec suffix|ngram] [--draft N]] [--f16-as-bf16]
            Prefill and decode tok/s, and decode against the measured bandwidth roofline.
  serve     -m FILE [--host H] [--port P] [--api-key K] [-t THREADS] [-np SEQUENCES] [-c CTX]
            [--kv-budget SIZE] [--kv-type f16|q8_0|q8_0-q4_0|f32] [--store FILE|none] [--max-tokens N]
            [--spec suffix|ngram|off] [--draft N] [--draft-fixed] [--rope-scaling ...] [--rope-scale S]
            [--ctx-overflow error|drop-turns] [--f16-as-bf16]
            OpenAI-compatible server (Chat Completions, Completions, Responses, WebSocket).
  code      (-m FILE | --url URL) [--api-key K] [--approval ask|writes|auto] [--allow-network]
            [--no-sandbox] [--exec TASK] [--resume] [--session FILE] [--transport auto|ws|sse]
            [--workspace DIR] [--model-name NAME] [--max-steps N] [--max-output-tokens N]
            [--command-timeout S] [-t THREADS] [-c CTX]
            A terminal coding agent: reads, searches and edits the files of the workspace and runs
            commands in a bubblewrap sandbox, asking approval as --approval says. Esc interrupts;
            typing while it works queues a redirect. -m starts a local `celer serve`.
  pull      NAME [--quant Q] [--revision R]
            Download a GGUF model from the Hugging Face hub into the cache: a short name
            (qwen2.5-coder:1.5b, qwen2.5-coder:7b-instruct-q8_0, deepseek-coder:6.7b, ...) or
            hf://OWNER/REPO/FILE.gguf. Resumes, checks size and sha256. HF_TOKEN, HF_ENDPOINT,
            https_proxy are honoured. A pulled model's name works wherever -m takes a file.
  list      The models in the cache (pulled or converted): name, size, path.
  rm        NAME  Remove a model from the cache.
  quantize  IN.gguf OUT.gguf TYPE [-t THREADS]
            Quantise an F32/F16/BF16 model: q8_0, q4_0, q4_k_m, q5_k_m, q6_k (K_M: the usual
            per-tensor mix). Prints each tensor's error.
  convert   DIR [-o OUT.gguf] [--type f16|bf16|f32|q8_0]
            A Hugging Face checkpoint (config.json, *.safetensors, tokenizer.json) of a Llama,
            Mistral, Qwen2 or Qwen3 model to GGUF, tensor by tensor.
  template  -m FILE --messages CONVERSATION.json [--template FILE.jinja] [--no-generation-prompt] [--ids]
            Render a conversation through the model's chat template.
  synth     --shape NAME [--type TYPE] [--vocab GGUF|tokenizer.json] [--layers N] [--seed S] -o OUT.gguf
            [--rope-scaling linear|yarn --rope-scale S [--yarn-orig-ctx N]]
            Write a model with random weights in the shape of a real one.
  help      This text.

Get a real model: `celer pull qwen2.5-coder:1.5b` downloads Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)
into the cache; then `celer run -m qwen2.5-coder:1.5b -p ...`. Any GGUF file of a supported
architecture (llama, qwen2, qwen3) works too: pass its path with -m.
)";

// A pulled model's name (qwen2.5-coder:1.5b, hf://..., OWNER/REPO/FILE from `celer list`) after
// -m stands for its file in the cache. Rewritten here, once, so no command has to know.
std::vector<std::string> with_cached_models(std::string_view cmd, int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    static constexpr std::string_view kTakeModel[] = {"run", "info", "bench", "serve", "code", "tokenize", "template"};
    if (std::find(std::begin(kTakeModel), std::end(kTakeModel), cmd) == std::end(kTakeModel)) return args;
    for (size_t i = 2; i + 1 < args.size(); ++i)
        if (args[i] == "-m" || args[i] == "--model" || args[i] == "--draft-model")
            if (auto path = celer::hub::resolve_model_arg(args[i + 1])) args[i + 1] = *path;
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace celer::cli;
    if (argc < 2) {
        std::fputs(kUsage.data(), stderr);
        return 2;
    }
    const std::string_view cmd = argv[1];
    try {
        std::vector<std::string> args = with_cached_models(cmd, argc, argv);
        std::vector<char*> arg_ptrs;
        for (auto& s : args) arg_ptrs.push_back(s.data());
        Args a(argc, arg_ptrs.data(), 2);
        if (cmd == "run") return cmd_run(a);
        if (cmd == "info") return cmd_info(a);
        if (cmd == "synth") return cmd_synth(a);
        if (cmd == "tokenize") return cmd_tokenize(a);
        if (cmd == "bench") return cmd_bench(a);
        if (cmd == "template") return cmd_template(a);
        if (cmd == "code") return cmd_code(a);
        if (cmd == "pull") return cmd_pull(a);
        if (cmd == "list" || cmd == "ls") return cmd_list(a);
        if (cmd == "rm") return cmd_rm(a);
        if (cmd == "quantize") return cmd_quantize(a);
        if (cmd == "convert") return cmd_convert(a);
#ifdef CELER_HAVE_SERVER
        if (cmd == "serve") return cmd_serve(a);
#else
        if (cmd == "serve") throw celer::Error("this build has no server (configured with -DCELER_SERVER=OFF)");
#endif
        if (cmd == "help" || cmd == "--help" || cmd == "-h") {
            std::fputs(kUsage.data(), stdout);
            return 0;
        }
        fmt::print(stderr, "celer: unknown command '{}'\n\n{}", cmd, kUsage);
        return 2;
    } catch (const celer::Error& e) {
        fmt::print(stderr, "celer {}: error: {}\n", cmd, e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        fmt::print(stderr, "celer {}: error: out of memory\n", cmd);
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "celer {}: internal error: {}\n", cmd, e.what());
        return 3;
    }
}
