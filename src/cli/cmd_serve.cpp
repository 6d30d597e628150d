// celer serve: the OpenAI-compatible server (src/server). Loads the model, sets up the slots and
// the response store, listens, and serves until SIGINT/SIGTERM.

#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "gguf/gguf.h"
#include "server/server.h"
#include "util/error.h"

namespace celer::cli {

int cmd_serve(Args& a) {
    std::string model = a.value_or({"-m", "--model"}, "");
    EngineOptions eo;
    eo.n_threads = int(a.int_or({"-t", "--threads"}, 0, 0, 1024));
    eo.kernels = a.value_or({"--kernels"}, "");
    eo.kv_type = parse_kv_type(a.value_or({"--kv-type"}, "f16"));
    read_model_flags(a, eo);
    server::SchedulerOptions so;
    so.n_slots = int(a.int_or({"-np", "--parallel"}, 4, 1, 256));
    const uint32_t ctx = uint32_t(a.int_or({"-c", "--ctx-size"}, 0, 0, 1 << 20));
    so.kv_budget = size_t(a.bytes_or({"--kv-budget"}, 0));
    so.spec.source = spec::parse_source(a.value_or({"--spec"}, "suffix"));
    so.spec.max_draft = int(a.int_or({"--draft"}, so.spec.max_draft, 1, spec::kMaxDraft));
    so.spec.adaptive = !a.flag({"--draft-fixed"});  // guess as far as the match goes, whatever it costs
    server::ServerOptions opt;
    opt.host = a.value_or({"--host"}, opt.host);
    opt.port = uint16_t(a.int_or({"--port"}, opt.port, 0, 65535));
    opt.api_key = a.value_or({"--api-key"}, "");
    if (opt.api_key.empty())
        if (const char* k = std::getenv("CELER_API_KEY")) opt.api_key = k;
    opt.max_body = size_t(a.int_or({"--max-body"}, (long long)opt.max_body, 1024, 1ll << 30));
    opt.max_connections = int(a.int_or({"--max-connections"}, opt.max_connections, 1, 1 << 20));
    opt.limits.max_tokens = int(a.int_or({"--max-tokens"}, opt.limits.max_tokens, 1, opt.limits.max_tokens));
    const std::string overflow = a.value_or({"--ctx-overflow"}, "error");
    if (overflow != "error" && overflow != "drop-turns")
        throw Error(fmt::format("--ctx-overflow: '{}' is not one of error, drop-turns", overflow));
    opt.limits.drop_turns = overflow == "drop-turns";
    std::string store_path = a.value_or({"--store"}, "");
    const std::string alias = a.value_or({"--alias"}, "");
    a.finish();
    if (model.empty()) model = demo_model_path();

    eo.n_ctx = 8;  // the engine's own cache is unused: every slot brings its own
    Engine engine(model, eo);
    so.slot_ctx = ctx ? ctx : std::min<uint32_t>(engine.model().hp.n_ctx_train, 4096);
    std::string tmpl(gguf::File::open(model).get_string("tokenizer.chat_template").value_or(""));
    std::string id = alias.empty() ? std::filesystem::path(model).filename().string() : alias;
    server::ModelContext mc(engine, id, tmpl);

    if (store_path.empty()) {
        std::filesystem::path dir;
        if (const char* h = std::getenv("CELER_HOME")) dir = h;
        else if (const char* x = std::getenv("XDG_CACHE_HOME")) dir = std::filesystem::path(x) / "celer";
        else if (const char* home = std::getenv("HOME")) dir = std::filesystem::path(home) / ".cache" / "celer";
        else dir = ".";
        std::filesystem::create_directories(dir);
        store_path = (dir / "responses.sqlite").string();
    }
    server::ResponseStore store(store_path == "none" ? "" : store_path);
    server::Scheduler sched(engine, so);
    server::Server srv(sched, mc, store, opt);
    const uint16_t port = srv.listen();
    fmt::print(stderr,
               "celer serve: {} ({}), {} threads, kernels {}{}, {} sequences of up to {} tokens; KV cache {}, {:.1f} MiB "
               "({} blocks of {} tokens, {:.1f} KiB per token); responses stored in {}\n",
               id, arch_name(engine.model().hp.arch), engine.n_threads(), engine.kernel_target(),
               eo.f16_as_bf16 ? " (F16 weights rounded to bf16)" : "", so.n_slots, so.slot_ctx,
               kv_type_name(eo.kv_type), double(sched.kv_bytes_total()) / (1 << 20), sched.kv_bytes_total() / sched.kv_block_bytes(),
               KvPool::kBlockTokens, double(sched.kv_block_bytes()) / KvPool::kBlockTokens / 1024, store_path == "none" ? "memory" : store_path);
    fmt::print(stderr, "celer serve: listening on http://{}:{}{}\n", opt.host, port, opt.api_key.empty() ? "" : " (API key required)");
    srv.run();
    sched.shutdown();  // before the server's event loop, which generations notify, goes away
    fmt::print(stderr, "celer serve: stopped\n");
    return 0;
}

}  // namespace celer::cli
