// The server's parts below the sockets: the OpenAI request parsing and tool-call parsing (pure
// functions), the response store, and the scheduler, whose batched generations must produce
// exactly the text each request gets alone. The sockets are covered end to end by
// tests/server/openai.test.mjs with the official client.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "celer/celer.h"
#include "common.h"
#include "server/api.h"
#include "server/scheduler.h"
#include "server/store.h"
#include "server/stream.h"
#include "tools/synth.h"

namespace celer::server {
namespace {

std::string stories() { return test::shared_dir() + "/models/stories260K.gguf"; }

// Runs a generation to its end on the calling thread (polling), returning its text.
std::string run_to_end(Generation& g) {
    std::string text;
    for (;;) {
        Generation::Chunk c;
        const bool done = g.take(c);
        text += c.text;
        if (done) return text;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

// Greedy text of `prompt` from a fresh engine with an empty cache: what batching, prefix reuse
// and copies must reproduce.
std::string greedy_text(Engine& engine, const std::string& prompt, int n) {
    SamplerParams sp;
    sp.temperature = 0;
    std::string out;
    engine.generate(engine.tokenize(prompt, true), n, sp, [&](std::string_view t) {
        out += t;
        return true;
    });
    return out;
}

std::string solo_text(const std::string& prompt, int n, uint32_t n_ctx = 0) {
    EngineOptions eo;
    eo.n_threads = 2;
    eo.n_ctx = n_ctx;
    Engine solo(stories(), eo);
    return greedy_text(solo, prompt, n);
}

int status_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ApiError& e) {
        return e.status;
    }
    return 0;
}

TEST(ToolCalls, ParsesHermesBlocks) {
    const auto p = parse_tool_calls(
        "Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.c\"}}\n</tool_call>\n"
        "<tool_call>{\"name\": \"ls\", \"arguments\": \"{\\\"dir\\\": \\\".\\\"}\"}</tool_call>  ");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].name, "read_file");
    EXPECT_EQ(p.calls[0].arguments, "{\"path\":\"a.c\"}");
    EXPECT_EQ(p.calls[1].name, "ls");
    EXPECT_EQ(p.calls[1].arguments, "{\"dir\": \".\"}") << "string arguments are passed through";
    EXPECT_EQ(p.content, "Let me look.");
}

TEST(ToolCalls, UnterminatedLastBlockAndBrokenJson) {
    auto p = parse_tool_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n");
    ASSERT_EQ(p.calls.size(), 1u) << "cut off by the end of generation, but whole JSON";
    EXPECT_EQ(p.content, "");
    p = parse_tool_calls("x <tool_call>{\"name\": \"f\", \"argu</tool_call> y");
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.content, "x <tool_call>{\"name\": \"f\", \"argu</tool_call> y") << "a block that does not parse stays text";
    p = parse_tool_calls("<tool_call>[1, 2]</tool_call>");
    EXPECT_TRUE(p.calls.empty());
    p = parse_tool_calls("plain text");
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.content, "plain text");
}

TEST(Api, SamplingFieldsAreCheckedAndClamped) {
    const Limits lim{.max_tokens = 100};
    auto p = gen_params(json::parse(R"({"temperature": 0, "top_p": 0.5, "seed": 7, "max_tokens": 5000, "stop": ["a", "", "b"]})"), lim,
                        "max_completion_tokens");
    EXPECT_EQ(p.sampler.temperature, 0.0f);
    EXPECT_EQ(p.sampler.top_p, 0.5f);
    EXPECT_EQ(p.sampler.seed, 7u);
    EXPECT_EQ(p.max_tokens, 100) << "clamped to the server's limit";
    EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "b"}));
    p = gen_params(json::parse(R"({"max_completion_tokens": 3, "max_tokens": 9, "stop": "x"})"), lim, "max_completion_tokens");
    EXPECT_EQ(p.max_tokens, 3) << "the endpoint's own field first";
    EXPECT_EQ(p.stop, (std::vector<std::string>{"x"}));
    for (const char* bad : {R"({"temperature": 3})", R"({"temperature": "hot"})", R"({"top_p": -1})", R"({"max_tokens": 0})",
                            R"({"max_tokens": 1.5})", R"({"seed": "x"})", R"({"stop": 5})", R"({"stop": [1]})"}) {
        EXPECT_EQ(status_of([&] { gen_params(json::parse(bad), lim, "max_tokens"); }), 400) << bad;
    }
    try {
        gen_params(json::parse(R"({"temperature": 9})"), lim, "max_tokens");
    } catch (const ApiError& e) {
        EXPECT_EQ(e.param, "temperature");
    }
}

TEST(Api, BodiesMustBeJsonObjects) {
    EXPECT_EQ(status_of([] { parse_body("{bad"); }), 400);
    EXPECT_EQ(status_of([] { parse_body("[1]"); }), 400);
    EXPECT_EQ(status_of([] { parse_body(""); }), 400);
    EXPECT_EQ(parse_body(R"({"a": 1})")["a"], 1);
}

TEST(Api, ResponsesItemsBecomeMessages) {
    const json items = json::parse(R"([
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
        {"role": "user", "content": "list files"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "pwd", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.c b.c"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "two files"}]}
    ])");
    const json m = items_to_messages(items, "system words");
    ASSERT_EQ(m.size(), 6u);
    EXPECT_EQ(m[0]["role"], "system");
    EXPECT_EQ(m[0]["content"], "system words");
    EXPECT_EQ(m[1]["role"], "system") << "developer is what the open templates call system";
    EXPECT_EQ(m[1]["content"], "be brief");
    EXPECT_EQ(m[2]["content"], "list files");
    EXPECT_EQ(m[3]["role"], "assistant");
    EXPECT_EQ(m[3]["tool_calls"].size(), 2u) << "consecutive calls are one assistant turn";
    EXPECT_EQ(m[4]["role"], "tool");
    EXPECT_EQ(m[4]["tool_call_id"], "c1");
    EXPECT_EQ(m[5]["content"], "two files");
    EXPECT_EQ(status_of([] { items_to_messages(json::parse(R"([{"type": "message", "role": "king", "content": "x"}])"), ""); }), 400);
    EXPECT_EQ(status_of([] { items_to_messages(json::parse(R"([5])"), ""); }), 400);
    EXPECT_EQ(status_of([] { items_to_messages(json::parse(R"([{"type": "function_call"}])"), ""); }), 400);
    EXPECT_EQ(status_of([] { input_items(json(5)); }), 400);
    EXPECT_EQ(input_items(json("hi"))[0]["role"], "user");
}

// response.steer input: text user messages, as a string or items; anything else is refused
// with invalid_input and a reason.
TEST(Api, SteerInputIsTextFromTheUser) {
    const json one = parse_steer_input("No: use a loop.");
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0]["role"], "user");
    EXPECT_EQ(one[0]["type"], "message");
    EXPECT_EQ(one[0]["content"], "No: use a loop.");
    const json items = parse_steer_input(json::parse(
        R"([{"role": "user", "content": "a"}, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "b"}]}])"));
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(items[1]["content"][0]["text"], "b");
    for (const char* bad : {R"("")", R"([])", R"(42)", R"([1])", R"([{"role": "assistant", "content": "x"}])",
                            R"([{"role": "user"}])", R"([{"role": "user", "content": "x", "id": "m1"}])",
                            R"([{"type": "function_call_output", "role": "user", "content": "x"}])",
                            R"([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}])"}) {
        try {
            (void)parse_steer_input(json::parse(bad));
            ADD_FAILURE() << bad << " was accepted";
        } catch (const ApiError& e) {
            EXPECT_EQ(e.code, "invalid_input") << bad;
            EXPECT_FALSE(std::string(e.what()).empty());
        }
    }
}

TEST(Api, OnlyFunctionToolsReachTheModel) {
    const json tools = json::parse(R"([{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}},
                                       {"type": "web_search"}, {"type": "namespace", "name": "ns", "tools": []}])");
    const json t = responses_tools_to_chat(tools);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0]["function"]["name"], "f");
    EXPECT_EQ(status_of([] { responses_tools_to_chat(json::parse(R"([{"type": "function"}])")); }), 400);
}

class ServerModel : public ::testing::Test {
protected:
    void SetUp() override {
        if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
        EngineOptions eo;
        eo.n_threads = 2;
        eo.n_ctx = 8;
        engine_ = std::make_unique<Engine>(stories(), eo);
        mc_ = std::make_unique<ModelContext>(*engine_, "stories", "");
    }
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<ModelContext> mc_;
};

TEST_F(ServerModel, ChatRequestsRenderThroughTheTemplate) {
    const json body = json::parse(R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                                      "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {}}}], "max_tokens": 7})");
    const ChatRequest r = parse_chat(body, *mc_, {});
    EXPECT_TRUE(r.tools);
    EXPECT_EQ(r.params.max_tokens, 7);
    std::string text;
    for (TokenId t : r.prompt) text += engine_->model().vocab.piece(t);
    EXPECT_NE(text.find("get_time"), std::string::npos) << text;
    EXPECT_NE(text.find("Hi"), std::string::npos);
    EXPECT_EQ(r.prompt[0], engine_->model().vocab.bos());
    EXPECT_EQ(status_of([&] { parse_chat(json::parse(R"({"messages": []})"), *mc_, {}); }), 400);
    EXPECT_EQ(status_of([&] { parse_chat(json::parse(R"({"messages": [{"role": "user"}], "n": 2})"), *mc_, {}); }), 400);
    EXPECT_EQ(status_of([&] { parse_chat(json::parse(R"({"messages": [{"content": "x"}]})"), *mc_, {}); }), 400);
    EXPECT_EQ(status_of([&] { parse_chat(json::parse(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"), *mc_, {}); }), 400);
    EXPECT_EQ(status_of([&] { parse_completion(json::parse(R"({"prompt": "a", "suffix": "b"})"), *mc_, {}); }), 400)
        << "stories260K has no fill-in-the-middle tokens";
    EXPECT_EQ(status_of([&] { parse_completion(json::parse(R"({"prompt": [1, 99999]})"), *mc_, {}); }), 400);
}

// Continuous batching must not change a single token: four greedy requests running at once
// (their prompts prefilled beside the others' decode steps) give the text each gets alone.
TEST_F(ServerModel, BatchedGenerationsMatchGeneratingAlone) {
    const std::vector<std::string> prompts = {"Once upon a time", "The cat sat", "Lily and Tom went to the park", "One day"};
    std::vector<std::string> alone;
    for (const auto& p : prompts) alone.push_back(solo_text(p, 40));
    Scheduler sched(*engine_, {.n_slots = 3, .slot_ctx = 128});
    std::vector<std::shared_ptr<Generation>> gens;
    for (const auto& p : prompts) {
        GenParams gp;
        gp.sampler.temperature = 0;
        gp.max_tokens = 40;
        gens.push_back(std::make_shared<Generation>(engine_->tokenize(p, true), gp));
        sched.submit(gens.back());
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(run_to_end(*gens[i]), alone[i]) << prompts[i];
        EXPECT_EQ(gens[i]->finish(), Finish::Length);
        EXPECT_EQ(gens[i]->completion_tokens(), 40u);
    }
    EXPECT_LT(sched.stats().steps.load(), 4u * 41u) << "decode steps were shared";
}

// Speculative decoding in the scheduler changes no token either: prompts that repeat themselves
// (so that most guesses are right) and one that does not, run at once with guesses from the
// suffix automaton and from n-grams, give each the greedy text it gets alone; guesses were made
// and taken; stop strings and the token limit land where they would.
TEST_F(ServerModel, SpeculationChangesNoToken) {
    const std::string story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ";
    const std::vector<std::string> prompts = {story + story + "Once upon", story + "One day, " + story + "One day,", "The cat sat",
                                              story + story + story};
    std::vector<std::string> alone;
    for (const auto& p : prompts) alone.push_back(solo_text(p, 60, 512));
    for (const auto source : {spec::Source::Suffix, spec::Source::Ngram}) {
        SchedulerOptions so{.n_slots = 3, .slot_ctx = 512};
        so.spec.source = source;
        so.spec.adaptive = false;  // guesses that do not depend on measured timings
        Scheduler sched(*engine_, so);
        std::vector<std::shared_ptr<Generation>> gens;
        for (const auto& p : prompts) {
            GenParams gp;
            gp.sampler.temperature = 0;
            gp.max_tokens = 60;
            gens.push_back(std::make_shared<Generation>(engine_->tokenize(p, true), gp));
            sched.submit(gens.back());
        }
        for (size_t i = 0; i < prompts.size(); ++i) {
            EXPECT_EQ(run_to_end(*gens[i]), alone[i]) << spec::source_name(source) << ": " << prompts[i];
            EXPECT_EQ(gens[i]->completion_tokens(), 60u);
            // The tokens the continuation will be given: exactly the greedy ones.
            EXPECT_EQ(gens[i]->output_tokens().size(), 60u);
        }
        EXPECT_GT(sched.stats().spec_accepted.load(), 20u) << spec::source_name(source);
        EXPECT_LT(sched.stats().spec_accepted.load(), sched.stats().spec_drafted.load());
        // A stop string and a token limit inside a run of taken guesses.
        const std::string want = alone[0];
        ASSERT_GT(want.size(), 30u);
        GenParams gp;
        gp.sampler.temperature = 0;
        gp.max_tokens = 60;
        gp.stop = {want.substr(20, 6)};
        auto g = std::make_shared<Generation>(engine_->tokenize(prompts[0], true), gp);
        sched.submit(g);
        EXPECT_EQ(run_to_end(*g), want.substr(0, want.find(gp.stop[0])));
        gp.stop.clear();
        gp.max_tokens = 7;
        g = std::make_shared<Generation>(engine_->tokenize(prompts[0], true), gp);
        sched.submit(g);
        EXPECT_EQ(run_to_end(*g), solo_text(prompts[0], 7, 512));
        EXPECT_EQ(g->completion_tokens(), 7u);
    }
}

// OpenAI's Predicted Outputs: the prediction's tokens seed the guesses. A prompt that repeats
// nothing, given its own greedy answer as the prediction, has most of that answer guessed and
// taken (counted as accepted prediction tokens), and the text is unchanged. A malformed
// prediction is a 400.
TEST_F(ServerModel, PredictionSeedsTheGuesses) {
    const std::string prompt = "The cat sat";
    const std::string answer = solo_text(prompt, 60, 512);
    SchedulerOptions so{.n_slots = 1, .slot_ctx = 512};
    so.spec.source = spec::Source::Suffix;
    so.spec.adaptive = false;  // guesses that do not depend on measured timings
    Scheduler sched(*engine_, so);
    const auto run = [&](const std::string& prediction) {
        const json body = {{"prompt", prompt}, {"max_tokens", 60}, {"temperature", 0}, {"prediction", {{"type", "content"}, {"content", prediction}}}};
        CompletionRequest r = parse_completion(body, *mc_, {});
        auto g = std::make_shared<Generation>(r.prompt, r.params);
        sched.submit(g);
        return std::make_pair(run_to_end(*g), g);
    };
    const auto [with, g] = run(answer);
    EXPECT_EQ(with, answer);
    EXPECT_GT(g->accepted_guesses(), 40u);
    const auto [without, h] = run("");
    EXPECT_EQ(without, answer);
    EXPECT_LT(h->accepted_guesses(), g->accepted_guesses() / 2) << "the prediction made the difference";
    const json usage = usage_chat(*g);
    EXPECT_EQ(usage["completion_tokens_details"]["accepted_prediction_tokens"], g->accepted_guesses());
    EXPECT_EQ(usage["completion_tokens_details"]["rejected_prediction_tokens"], g->rejected_guesses());
    for (const char* bad : {R"({"prompt": "a", "prediction": "text"})", R"({"prompt": "a", "prediction": {"type": "other", "content": "x"}})",
                            R"({"prompt": "a", "prediction": {"type": "content", "content": 5}})",
                            R"({"messages": [{"role": "user", "content": "a"}], "prediction": {"type": "content"}})"})
        EXPECT_EQ(status_of([&] {
                      const json b = json::parse(bad);
                      if (b.contains("messages")) parse_chat(b, *mc_, {});
                      else parse_completion(b, *mc_, {});
                  }),
                  400)
            << bad;
    const json parts = json::parse(R"({"messages": [{"role": "user", "content": "a"}], "prediction": {"type": "content", "content": [{"type": "text", "text": "Once upon"}]}})");
    EXPECT_EQ(parse_chat(parts, *mc_, {}).params.prediction, engine_->tokenize("Once upon", false));
}

// A request whose prefix a running sequence already computed shares that sequence's blocks: from
// the prefix tree once the block is full, else from the running cache itself (a fork; which one
// depends on how far A got). Its text is still exactly what it gets from an empty cache, and so
// is the donor's.
TEST_F(ServerModel, PrefixFromARunningSequenceIsSharedExactly) {
    const std::string prefix = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";
    const std::string b_prompt = prefix + " One day";
    const std::string alone = solo_text(b_prompt, 30);
    Scheduler sched(*engine_, {.n_slots = 2, .slot_ctx = 1024});
    GenParams gp;
    gp.sampler.temperature = 0;
    gp.max_tokens = 900;  // long enough to be still running when B arrives
    auto a = std::make_shared<Generation>(engine_->tokenize(prefix + " The sun", true), gp);
    sched.submit(a);
    while (a->completion_tokens() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // A's prompt is in its slot
    gp.max_tokens = 30;
    auto b = std::make_shared<Generation>(engine_->tokenize(b_prompt, true), gp);
    sched.submit(b);
    EXPECT_EQ(run_to_end(*b), alone);
    EXPECT_GE(b->cached_tokens() + 3, engine_->tokenize(prefix, true).size()) << "the shared prefix was not recomputed";
    a->cancel();
    const std::string a_text = run_to_end(*a);
    EXPECT_EQ(a_text, solo_text(prefix + " The sun", 900, 1024).substr(0, a_text.size()));
}

// Requests arriving together with a shared prefix: the first computes it, the others wait for
// it and copy it, so it is prefilled once; every text is still exactly its solo text.
TEST_F(ServerModel, ConcurrentSharedPrefixIsComputedOnce) {
    std::string prefix = "Once upon a time";
    for (int i = 0; i < 12; ++i) prefix += " there was a little dog who liked to run in the big green park";
    const std::vector<std::string> tails = {" and then", " but one day", " so the cat", " until the rain"};
    std::vector<std::string> alone;
    for (const auto& t : tails) alone.push_back(solo_text(prefix + t, 16, 512));
    Scheduler sched(*engine_, {.n_slots = 4, .slot_ctx = 512});
    std::vector<std::shared_ptr<Generation>> gens;
    size_t prompt_total = 0;
    for (const auto& t : tails) {
        GenParams gp;
        gp.sampler.temperature = 0;
        gp.max_tokens = 16;
        gens.push_back(std::make_shared<Generation>(engine_->tokenize(prefix + t, true), gp));
        prompt_total += gens.back()->prompt_tokens();
    }
    for (auto& g : gens) sched.submit(g);
    for (size_t i = 0; i < gens.size(); ++i) EXPECT_EQ(run_to_end(*gens[i]), alone[i]) << tails[i];
    const size_t shared = engine_->tokenize(prefix, true).size();
    EXPECT_GT(shared, 150u);
    EXPECT_LT(sched.stats().prefilled_tokens.load(), prompt_total - 2 * shared) << "the shared prefix was computed more than twice";
    EXPECT_LE(sched.stats().prefilled_tokens.load(), shared + 4 * 16) << "computed once, plus each tail";
}

// Stress: random multi-turn sessions over a few shared system prompts, duplicate requests running
// at once (forks of one another's blocks), random cancellations, on a KV budget so tight that
// cached prefixes are evicted all the time and running sequences sometimes run out of blocks.
// Every output must be exactly the greedy text from an empty cache, or a prefix of it where the
// generation was cancelled or ran out of blocks: eviction must never touch a live block.
TEST_F(ServerModel, EvictionUnderATightBudgetNeverCorruptsASequence) {
    const std::vector<std::string> words = {"Once", "upon", "a", "time", "there", "was", "little", "girl", "named", "Lily",
                                            "she", "loved", "to", "play", "with", "her", "ball", "in", "the", "park",
                                            "one", "day", "Tom", "saw", "big", "dog", "and", "they", "were", "happy"};
    uint64_t rng = 12345;
    const auto next = [&](uint64_t n) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        return (rng >> 33) % n;
    };
    const auto phrase = [&](size_t n) {
        std::string s;
        for (size_t i = 0; i < n; ++i) s += " " + words[next(words.size())];
        return s;
    };
    std::vector<std::string> systems;
    for (int i = 0; i < 3; ++i) systems.push_back("Once upon a time" + phrase(40 + 30 * size_t(i)));

    EngineOptions eo;
    eo.n_threads = 2;
    eo.n_ctx = 512;
    Engine solo(stories(), eo);

    const size_t block = engine_->forward().make_pool(1)->block_bytes();
    Scheduler sched(*engine_, {.n_slots = 3, .slot_ctx = 512, .kv_budget = 14 * block});
    std::vector<std::string> sessions;
    size_t exact = 0, prefixes = 0;
    for (int wave = 0; wave < 14; ++wave) {
        struct Req {
            std::string prompt;
            int max_tokens;
            std::shared_ptr<Generation> g;
            size_t session;
        };
        std::vector<Req> reqs;
        for (int i = 0; i < 5; ++i) {
            size_t si = next(sessions.size() + 2);
            if (si >= sessions.size() || sessions[si].size() > 900) {
                sessions.push_back(systems[next(systems.size())]);
                si = sessions.size() - 1;
            }
            Req r{sessions[si] + phrase(3 + next(12)), int(1 + next(30)), nullptr, si};
            const bool twice = next(6) == 0;  // the same prompt at once: the second forks the first
            for (int k = 0; k < (twice ? 2 : 1); ++k) reqs.push_back(r);
        }
        for (Req& r : reqs) {
            GenParams gp;
            gp.sampler.temperature = 0;
            gp.max_tokens = r.max_tokens;
            r.g = std::make_shared<Generation>(engine_->tokenize(r.prompt, true), gp);
            sched.submit(r.g);
        }
        for (Req& r : reqs)
            if (next(5) == 0) {
                std::this_thread::sleep_for(std::chrono::milliseconds(next(15)));
                r.g->cancel();
            }
        for (Req& r : reqs) {
            const std::string out = run_to_end(*r.g);
            const std::string want = greedy_text(solo, r.prompt, r.max_tokens);
            ASSERT_NE(r.g->finish(), Finish::Error) << r.g->error();
            const bool whole = r.g->finish() == Finish::Stop || (r.g->finish() == Finish::Length && int(r.g->completion_tokens()) == r.max_tokens);
            if (whole) {
                ASSERT_EQ(out, want) << "wave " << wave << ": " << r.prompt;
                ++exact;
            } else {
                ASSERT_EQ(out, want.substr(0, out.size())) << "wave " << wave << ": " << r.prompt;
                ++prefixes;
            }
            sessions[r.session] = r.prompt + out;  // the next turn continues what it got
        }
    }
    EXPECT_GT(exact, 40u);
    EXPECT_GT(sched.stats().evicted_blocks.load(), 10u) << "the budget was meant to force evictions";
    EXPECT_GT(sched.stats().cached_tokens.load(), 1000u) << "prefixes were reused";
    fmt::print("{} exact, {} cut short; {} blocks evicted, {} cached and {} prefilled tokens\n", exact, prefixes,
               sched.stats().evicted_blocks.load(), sched.stats().cached_tokens.load(), sched.stats().prefilled_tokens.load());
}

// Greedy generation that starts from cached blocks (an earlier turn's prompt and output, a
// partly matching block copied on write) gives the text of a scheduler whose cache is empty, on
// several architectures, weight types and KV element types.
TEST(PrefixCache, CacheHitsMatchAnEmptyCache) {
    struct Case {
        std::string model;
        KvType kv;
    };
    std::vector<Case> cases = {{test::synth_model("tiny-qwen2", "q8_0"), KvType::F16}, {test::synth_model("tiny-qwen2", "q8_0"), KvType::Q8_0},
                               {test::synth_model("tiny-llama", "q4_k_m"), KvType::F16}, {test::synth_model("tiny-qwen3", "f16"), KvType::Q8_0},
                               {test::synth_model("tiny-qwen2", "q8_0"), KvType::Q8_0_Q4_0}};
    if (test::have_shared()) cases.push_back({stories(), KvType::F16});
    for (const Case& c : cases) {
        EngineOptions eo;
        eo.n_threads = 2;
        eo.n_ctx = 8;
        eo.kv_type = c.kv;
        Engine engine(c.model, eo);
        const uint32_t n_vocab = engine.model().hp.n_vocab;
        std::vector<TokenId> turn1;
        for (uint32_t i = 0; i < 150; ++i) turn1.push_back(TokenId((i * 7919u + 13u) % n_vocab));
        GenParams gp;
        gp.sampler.temperature = 0;
        gp.max_tokens = 20;
        const auto generate = [&](Scheduler& sched, const std::vector<TokenId>& prompt) {
            auto g = std::make_shared<Generation>(prompt, gp);
            sched.submit(g);
            const std::string text = run_to_end(*g);
            return std::make_pair(text, g->cached_tokens());
        };
        Scheduler warm(engine, {.n_slots = 2, .slot_ctx = 512});
        const std::string out1 = generate(warm, turn1).first;
        // Turn 2: turn 1's prompt, then other tokens (its output's tokens need not come back the
        // same through the tokenizer, and random weights give arbitrary text).
        std::vector<TokenId> turn2 = turn1;
        for (uint32_t i = 0; i < 40; ++i) turn2.push_back(TokenId((i * 104729u + 5u) % n_vocab));
        const auto [hit, cached] = generate(warm, turn2);
        EXPECT_GE(cached, turn1.size() - 1) << c.model;
        // A third request sharing only part of turn 1's second block: a partial block copied.
        std::vector<TokenId> turn3(turn1.begin(), turn1.begin() + 100);
        turn3.push_back(TokenId(3));
        const auto [part, cached3] = generate(warm, turn3);
        EXPECT_EQ(cached3, 100u) << c.model;
        Scheduler cold(engine, {.n_slots = 1, .slot_ctx = 512});
        EXPECT_EQ(hit, generate(cold, turn2).first) << c.model << " " << kv_type_name(c.kv);
        Scheduler cold3(engine, {.n_slots = 1, .slot_ctx = 512});
        EXPECT_EQ(part, generate(cold3, turn3).first) << c.model << " " << kv_type_name(c.kv);
    }
}

TEST_F(ServerModel, StopStringsEndTheTextBeforeThem) {
    Scheduler sched(*engine_, {.n_slots = 1, .slot_ctx = 128});
    GenParams gp;
    gp.sampler.temperature = 0;
    gp.max_tokens = 40;
    auto full = std::make_shared<Generation>(engine_->tokenize("Once upon a time", true), gp);
    sched.submit(full);
    const std::string text = run_to_end(*full);
    ASSERT_NE(text.find("Lily"), std::string::npos) << text;
    gp.stop = {"zzz", "Lily"};
    auto cut = std::make_shared<Generation>(engine_->tokenize("Once upon a time", true), gp);
    sched.submit(cut);
    EXPECT_EQ(run_to_end(*cut), text.substr(0, text.find("Lily")));
    EXPECT_EQ(cut->finish(), Finish::Stop);
}

// A conversation's next turn finds its prefix in the slot; a cancelled generation ends at once
// and keeps its slot's cache.
TEST_F(ServerModel, PrefixReuseAndCancel) {
    Scheduler sched(*engine_, {.n_slots = 2, .slot_ctx = 256});
    GenParams gp;
    gp.sampler.temperature = 0;
    gp.max_tokens = 20;
    const auto p1 = engine_->tokenize("Once upon a time", true);
    auto g1 = std::make_shared<Generation>(p1, gp);
    sched.submit(g1);
    const std::string t1 = run_to_end(*g1);
    auto p2 = engine_->tokenize("Once upon a time" + t1 + " The end.", true);
    auto g2 = std::make_shared<Generation>(p2, gp);
    sched.submit(g2);
    run_to_end(*g2);
    EXPECT_GE(g2->cached_tokens(), p1.size()) << "the first turn's prompt at least was found";
    EXPECT_LT(g2->cached_tokens(), p2.size());

    gp.max_tokens = 200;
    auto g3 = std::make_shared<Generation>(p1, gp);
    sched.submit(g3);
    g3->cancel();
    run_to_end(*g3);
    EXPECT_EQ(g3->finish(), Finish::Cancelled);
    EXPECT_LT(g3->completion_tokens(), 200u);
    EXPECT_GE(sched.stats().cancelled.load(), 1u);

    // Refusals: a prompt the context cannot hold.
    std::vector<TokenId> huge(256, 5);
    EXPECT_THROW(sched.submit(std::make_shared<Generation>(huge, gp)), Error);
}

// A tiny qwen2-shaped model with the real Qwen2 vocabulary (written once per process).
std::unique_ptr<Engine> tiny_qwen_with_qwen_vocab() {
    const auto path = (test::scratch_dir() / "tq-vocab.gguf").string();
    if (!std::filesystem::exists(path)) {
        synth::Options o;
        o.shape = "tiny-qwen2";
        o.type = "q8_0";
        o.vocab_from = test::shared_dir() + "/tokenizers/ggml-vocab-qwen2.gguf";
        synth::write_model(o, path);
    }
    EngineOptions eo;
    eo.n_threads = 1;
    eo.n_ctx = 8;
    return std::make_unique<Engine>(path, eo);
}

// A WebSocket session tokenizes only what follows the last control token its previous prompt
// shares with the new one; the tokens must equal a full tokenization on every turn, also when
// the conversation's history changes under it.
TEST(PromptCache, IncrementalTokenizationIsExact) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const auto engine_ptr = tiny_qwen_with_qwen_vocab();
    Engine& engine = *engine_ptr;
    const ModelContext mc(engine, "tq", "");
    PromptCache cache;
    json messages = json::array({{{"role", "system"}, {"content", "You are a coder. Édition «spéciale» 日本語 \t tabs."}}});
    const json tools = json::parse(R"([{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}])");
    for (int turn = 0; turn < 6; ++turn) {
        messages.push_back({{"role", "user"}, {"content", fmt::format("Turn {}: fix   the bug in main.cpp\n  please", turn)}});
        if (turn == 4) messages[1]["content"] = "history rewritten";  // the template output changes early
        const auto full = mc.chat_prompt(messages, tools);
        const auto inc = mc.chat_prompt(messages, tools, &cache);
        EXPECT_EQ(inc, full) << "turn " << turn;
        if (turn > 0 && turn != 4) {
            EXPECT_GT(cache.reused, 10u) << "turn " << turn;
        }
        EXPECT_EQ(cache.extended, turn != 4) << "turn " << turn << ": a rewritten history is noticed, an extension is not";
        messages.push_back({{"role", "assistant"}, {"content", fmt::format("Done {} ", turn)}});
    }
}

// --ctx-overflow drop-turns: a conversation longer than the context loses its oldest turns,
// whole (a user message and the answers and tool results after it), keeps its system messages
// and its last turn, and drops no more than it must; without the option nothing changes.
TEST(ContextOverflow, DropTurnsKeepsSystemAndNewestTurns) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const auto engine_ptr = tiny_qwen_with_qwen_vocab();
    const ModelContext mc(*engine_ptr, "tq", "");
    json messages = json::array({{{"role", "system"}, {"content", "You are a careful coder."}}});
    for (int turn = 0; turn < 9; ++turn) {
        messages.push_back({{"role", "user"}, {"content", fmt::format("Turn {}: {}", turn, std::string(40 + 13 * turn, 'a' + char(turn)))}});
        messages.push_back({{"role", "assistant"}, {"content", "", }, {"tool_calls", json::array({{{"id", "c"}, {"type", "function"},
                              {"function", {{"name", "read"}, {"arguments", "{}"}}}}})}});
        messages.push_back({{"role", "tool"}, {"tool_call_id", "c"}, {"content", fmt::format("result {}", turn)}});
        messages.push_back({{"role", "assistant"}, {"content", fmt::format("Done with turn {}.", turn)}});
    }
    messages.push_back({{"role", "user"}, {"content", "Now the last question."}});
    const json tools = json::array();
    const auto full = mc.chat_prompt(messages, tools);
    const auto last_turns = [&](size_t k) {  // the system message and the newest k turns
        json m = json::array({messages[0]});
        size_t users = 0, from = messages.size();
        while (from > 1 && users < k)
            if (messages[--from]["role"] == "user") ++users;
        for (size_t i = from; i < messages.size(); ++i) m.push_back(messages[i]);
        return m;
    };
    size_t dropped = 99;
    Limits lim;
    lim.ctx = full.size() - 10;
    EXPECT_EQ(mc.fit_chat_prompt(messages, tools, lim, 64, nullptr, &dropped), full) << "only with drop_turns";
    EXPECT_EQ(dropped, 0u);
    lim.drop_turns = true;
    for (const size_t reserve : {size_t(1), size_t(64), size_t(200)}) {
        PromptCache cache;
        const auto fitted = mc.fit_chat_prompt(messages, tools, lim, reserve, &cache, &dropped);
        ASSERT_GT(dropped, 0u);
        ASSERT_LT(dropped, 10u);
        EXPECT_EQ(fitted, mc.chat_prompt(last_turns(10 - dropped), tools)) << "whole turns, system kept, reserve " << reserve;
        EXPECT_LE(fitted.size() + reserve, lim.ctx);
        EXPECT_GT(mc.chat_prompt(last_turns(11 - dropped), tools).size() + reserve, lim.ctx) << "one turn fewer dropped must not fit";
        EXPECT_EQ(cache.tokens, fitted) << "the session's prompt cache holds what was sent";
    }
    // Fits already: unchanged. Cannot fit even the last turn with the reserve: the last turn alone.
    lim.ctx = full.size() + 64;
    EXPECT_EQ(mc.fit_chat_prompt(messages, tools, lim, 64, nullptr, &dropped), full);
    EXPECT_EQ(dropped, 0u);
    lim.ctx = mc.chat_prompt(last_turns(1), tools).size() + 5;
    EXPECT_EQ(mc.fit_chat_prompt(messages, tools, lim, 5000, nullptr, &dropped), mc.chat_prompt(last_turns(1), tools));
    EXPECT_EQ(dropped, 9u);
    // Through parse_chat: the reserve is max_tokens.
    json body = {{"messages", messages}, {"max_tokens", 30}};
    lim.ctx = full.size();
    const ChatRequest r = parse_chat(body, mc, lim);
    EXPECT_GT(r.dropped_turns, 0u);
    EXPECT_LE(r.prompt.size() + 30, lim.ctx);
}

// What a response generated goes back into its session's prompt as the model's own tokens,
// even where tokenizing the text again would split it differently (whose KV would then be
// computed again): up to where the next prompt's text stops following that output.
TEST(PromptCache, SplicedOutputKeepsTheModelsTokens) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const auto engine_ptr = tiny_qwen_with_qwen_vocab();
    Engine& engine = *engine_ptr;
    const ModelContext mc(engine, "tq", "");
    const Vocab& v = mc.vocab();
    const std::string said = "int a;\n\n  return  b;";
    std::vector<TokenId> out;  // one token per character: not how the tokenizer splits it
    for (char c : said) {
        const auto t = v.encode(std::string(1, c));
        out.insert(out.end(), t.begin(), t.end());
    }
    ASSERT_NE(out, v.encode(said));
    const auto starts_with = [](const std::vector<TokenId>& a, const std::vector<TokenId>& prefix) {
        return a.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), a.begin());
    };
    const auto text = [&](const std::vector<TokenId>& ids) {
        std::string t;
        for (TokenId id : ids) t += v.piece(id, true);
        return t;
    };
    const json base = json::array({{{"role", "system"}, {"content", "You are a coder."}}, {{"role", "user"}, {"content", "Write it."}}});

    // The output as the next prompt renders it: every generated token kept.
    {
        PromptCache cache;
        const auto prompt = mc.chat_prompt(base, json(), &cache);
        mc.splice_output(cache, out);
        json m = base;
        m.push_back({{"role", "assistant"}, {"content", said}});
        m.push_back({{"role", "user"}, {"content", "No: use a loop."}});
        const auto full = mc.chat_prompt(m, json());
        const auto inc = mc.chat_prompt(m, json(), &cache);
        std::vector<TokenId> expect = prompt;
        expect.insert(expect.end(), out.begin(), out.end());
        EXPECT_TRUE(starts_with(inc, expect)) << "the prompt, then the generated tokens";
        EXPECT_EQ(text(inc), text(full)) << "the same text";
        EXPECT_NE(inc, full);
        // And on the turn after, still.
        m.push_back({{"role", "assistant"}, {"content", "ok"}});
        m.push_back({{"role", "user"}, {"content", "Thanks."}});
        const auto inc2 = mc.chat_prompt(m, json(), &cache);
        EXPECT_TRUE(starts_with(inc2, expect));
        EXPECT_EQ(text(inc2), text(mc.chat_prompt(m, json())));
    }
    // The output cut short (a stop string, a template that trims): the tokens up to the cut.
    {
        PromptCache cache;
        const auto prompt = mc.chat_prompt(base, json(), &cache);
        mc.splice_output(cache, out);
        json m = base;
        m.push_back({{"role", "assistant"}, {"content", "int a;"}});
        m.push_back({{"role", "user"}, {"content", "More."}});
        const auto inc = mc.chat_prompt(m, json(), &cache);
        std::vector<TokenId> expect = prompt;
        expect.insert(expect.end(), out.begin(), out.begin() + 6);  // "int a;" was six one-character tokens
        EXPECT_TRUE(starts_with(inc, expect));
        EXPECT_EQ(text(inc), text(mc.chat_prompt(m, json())));
    }
    // The output rendered differently inside (a parsed tool call written back another way): no
    // cut falls there, and the prompt is the tokenizer's.
    {
        PromptCache cache;
        (void)mc.chat_prompt(base, json(), &cache);
        mc.splice_output(cache, out);
        json m = base;
        m.push_back({{"role", "assistant"}, {"content", "int a; x"}});
        m.push_back({{"role", "user"}, {"content", "More."}});
        EXPECT_EQ(mc.chat_prompt(m, json(), &cache), mc.chat_prompt(m, json()));
    }
}

// Queued requests whose clients left end at once, even while every slot is busy, and stop
// counting against the queue's limit.
TEST_F(ServerModel, CancelledQueuedRequestsLeaveWhileSlotsAreBusy) {
    Scheduler sched(*engine_, {.n_slots = 1, .slot_ctx = 4096, .max_queue = 2});
    GenParams gp;
    gp.sampler.temperature = 0;
    gp.max_tokens = 4000;  // seconds of work: busy for the whole test
    auto busy = std::make_shared<Generation>(engine_->tokenize("Once upon a time", true), gp);
    sched.submit(busy);
    while (busy->completion_tokens() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // in its slot
    std::vector<std::shared_ptr<Generation>> queued;
    for (int i = 0; i < 2; ++i) {
        queued.push_back(std::make_shared<Generation>(engine_->tokenize("The cat", true), gp));
        sched.submit(queued.back());
    }
    EXPECT_THROW(sched.submit(std::make_shared<Generation>(engine_->tokenize("A dog", true), gp)), Error) << "the queue is full";
    for (auto& g : queued) g->cancel();
    for (auto& g : queued) {
        run_to_end(*g);
        EXPECT_EQ(g->finish(), Finish::Cancelled);
    }
    EXPECT_EQ(busy->finish(), Finish::None) << "the slot was still busy";
    sched.submit(std::make_shared<Generation>(engine_->tokenize("A dog", true), gp));  // room again
    busy->cancel();
}

TEST(ResponseStore, SurvivesReopenAndDeletes) {
    const auto path = (test::scratch_dir() / "responses.sqlite").string();
    {
        ResponseStore s(path);
        s.put("resp_1", {R"({"id":"resp_1"})", "[]"});
        s.put("resp_2", {"{}", R"([{"type":"message"}])"});
    }
    ResponseStore s(path);
    auto r = s.get("resp_1");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->response, R"({"id":"resp_1"})");
    EXPECT_EQ(s.get("resp_2")->context, R"([{"type":"message"}])");
    EXPECT_FALSE(s.get("resp_3"));
    EXPECT_TRUE(s.erase("resp_1"));
    EXPECT_FALSE(s.erase("resp_1"));
    EXPECT_FALSE(s.get("resp_1"));
    EXPECT_THROW(ResponseStore("/nonexistent-dir/x/y.sqlite"), Error);
}

}  // namespace
}  // namespace celer::server
