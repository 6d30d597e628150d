// End to end on the one trained model here: exact greedy text, and engine logits against the
// reference forward pass.
#include <gtest/gtest.h>

#include "celer/celer.h"
#include "common.h"
#include "model/reference.h"

namespace celer {
namespace {

const std::string kExpected =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. "
    "She wanted to play with it, but it was too high.\nLily's mom said";

std::string stories() { return test::shared_dir() + "/models/stories260K.gguf"; }

TEST(Stories, GreedyTextIsExact) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    for (const auto target : kernels::available_targets()) {
        for (int threads : {1, 2}) {
            EngineOptions eo;
            eo.n_threads = threads;
            eo.kernels = std::string(target);
            Engine engine(stories(), eo);
            const auto ids = engine.tokenize("Once upon a time", true);
            EXPECT_EQ(ids, (std::vector<TokenId>{1, 403, 407, 261, 378}));
            SamplerParams sp;
            sp.temperature = 0;
            std::string out;
            const auto st = engine.generate(ids, 64, sp, [&](std::string_view t) {
                out += t;
                return true;
            });
            EXPECT_EQ(st.n_generated, 64u);
            EXPECT_EQ(out, kExpected) << threads << " threads, kernels " << target;
        }
    }
}

TEST(Stories, EngineMatchesReference) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const auto model = load_model(stories());
    ReferenceForward ref(*model);
    ThreadPool pool(2);
    CpuForward fwd(*model, pool, kernels::select_kernels(), 128);
    std::vector<TokenId> tokens = {1, 403, 407, 261, 378};
    for (int i = 0; i < 59; ++i) tokens.push_back(TokenId((i * 37 + 11) % 512));
    std::vector<float> got, want;
    fwd.eval(tokens, true, got);
    for (TokenId t : tokens) {
        const auto l = ref.step(t);
        want.insert(want.end(), l.begin(), l.end());
    }
    EXPECT_LT(test::nmse(got, want), 1e-6);
}

TEST(Stories, CallbackCanStopGeneration) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    EngineOptions eo;
    eo.n_threads = 1;
    Engine engine(stories(), eo);
    SamplerParams sp;
    sp.temperature = 0;
    int calls = 0;
    const auto st = engine.generate(engine.tokenize("Once upon a time", true), 64, sp, [&](std::string_view) { return ++calls < 3; });
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(st.n_generated, 3u);
}

}  // namespace
}  // namespace celer
