// Tokenizer throughput on real source code: MB/s on one thread, median of repetitions, with a
// cold word cache (a fresh vocabulary per repetition) and a warm one.
// usage: celer_bench_tokenizer VOCAB.gguf FILE... [--reps N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s VOCAB.gguf FILE... [--reps N]\n", argv[0]);
        return 2;
    }
    int reps = 5;
    std::vector<std::string> texts;
    size_t bytes = 0;
    for (int i = 2; i < argc; ++i) {
        if (std::string(argv[i]) == "--reps" && i + 1 < argc) {
            reps = std::max(1, std::atoi(argv[++i]));
            continue;
        }
        std::ifstream in(argv[i], std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        texts.push_back(ss.str());
        bytes += texts.back().size();
    }
    try {
        const auto f = celer::gguf::File::open(argv[1]);
        using clock = std::chrono::steady_clock;
        std::vector<double> cold, warm;
        size_t tokens = 0;
        for (int r = 0; r < reps; ++r) {
            const celer::Vocab v = celer::Vocab::load(f);
            for (int pass = 0; pass < 2; ++pass) {
                tokens = 0;
                const auto t0 = clock::now();
                for (const auto& t : texts) tokens += v.encode(t).size();
                const double s = std::chrono::duration<double>(clock::now() - t0).count();
                (pass == 0 ? cold : warm).push_back(double(bytes) / 1e6 / s);
            }
        }
        std::printf("{\"vocab\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, \"reps\": %d, \"cold_mb_s\": %.2f, \"warm_mb_s\": %.2f}\n",
                    argv[1], bytes, tokens, reps, median(cold), median(warm));
    } catch (const celer::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
