#include <cstdio>
#include <string_view>

#include <fmt/format.h>

#include "cli/commands.h"
#include "util/error.h"

namespace {

constexpr std::string_view kUsage = R"(celer: fast local inference for code models (GGUF)

usage: celer COMMAND [options]

commands:
  run       -m FILE -p TEXT [-n N] [--temp T] [--seed S] [-t THREADS] [--top-k K] [--top-p P]
            [--min-p P] [--repeat-penalty R] [--presence-penalty P] [--frequency-penalty F]
            [-c CTX] [--kernels NAME] [--kv-type f16|f32|q8_0] [--file PROMPT_FILE]
            [--spec off|suffix|ngram|model] [--draft N] [--draft-fixed] [--draft-model FILE]
            [--rope-scaling none|linear|ntk|yarn] [--rope-scale S] [--yarn-orig-ctx N]
            Generate a continuation; only the generated text goes to stdout. --spec guesses
            tokens by copying from the text so far (or with a small draft model of the same
            vocabulary) and lets the model check them (lossless).
            Without -m, a small synthetic demo model (random weights) is used.
  info      -m FILE [--rope-scaling yarn --rope-scale S ...]
            Architecture, shapes, tensor types, bytes read per token, KV cache per context.
  tokenize  -m FILE (TEXT | --file PATH) [--special] [--bos]
            Token ids separated by spaces.
  bench     -m FILE [-t N] [--prompt N] [--gen N] [--depth N | --depths 0,8192,32768] [--reps N] [--kv-type f16|f32|q8_0] [--json]
            [--verify] [--replay PAIRS_DIR [--spec suffix|ngram] [--draft N]]
            Prefill and decode tok/s, and decode against the measured bandwidth roofline.
  serve     -m FILE [--host H] [--port P] [--api-key K] [-t THREADS] [-np SEQUENCES] [-c CTX]
            [--kv-budget SIZE] [--kv-type f16|q8_0|f32] [--store FILE|none] [--max-tokens N]
            [--spec suffix|ngram|off] [--draft N] [--draft-fixed] [--rope-scaling ...] [--rope-scale S]
            [--ctx-overflow error|drop-turns]
            OpenAI-compatible server (Chat Completions, Completions, Responses, WebSocket).
  code      (-m FILE | --url URL) [--api-key K] [--approval ask|writes|auto] [--allow-network]
            [--no-sandbox] [--exec TASK] [--resume] [--session FILE] [--transport auto|ws|sse]
            [--workspace DIR] [--model-name NAME] [--max-steps N] [--max-output-tokens N]
            [--command-timeout S] [-t THREADS] [-c CTX]
            A terminal coding agent: reads, searches and edits the files of the workspace and runs
            commands in a bubblewrap sandbox, asking approval as --approval says. Esc interrupts;
            typing while it works queues a redirect. -m starts a local `celer serve`.
  template  -m FILE --messages CONVERSATION.json [--template FILE.jinja] [--no-generation-prompt] [--ids]
            Render a conversation through the model's chat template.
  synth     --shape NAME [--type TYPE] [--vocab GGUF|tokenizer.json] [--layers N] [--seed S] -o OUT.gguf
            [--rope-scaling linear|yarn --rope-scale S [--yarn-orig-ctx N]]
            Write a model with random weights in the shape of a real one.
  help      This text.

Get a real model: download a GGUF file of a supported architecture (llama, qwen2, qwen3),
for example Qwen2.5-Coder-1.5B-Instruct in Q4_K_M or Q8_0, and pass it with -m.
)";

}  // namespace

int main(int argc, char** argv) {
    using namespace celer::cli;
    if (argc < 2) {
        std::fputs(kUsage.data(), stderr);
        return 2;
    }
    const std::string_view cmd = argv[1];
    try {
        Args a(argc, argv, 2);
        if (cmd == "run") return cmd_run(a);
        if (cmd == "info") return cmd_info(a);
        if (cmd == "synth") return cmd_synth(a);
        if (cmd == "tokenize") return cmd_tokenize(a);
        if (cmd == "bench") return cmd_bench(a);
        if (cmd == "template") return cmd_template(a);
        if (cmd == "code") return cmd_code(a);
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
