// Helpers shared by the tests: scratch directories, synthetic models, error metrics.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <random>
#include <unistd.h>
#include <string>
#include <vector>

#include "tools/synth.h"

namespace celer::test {

// A directory private to this test process, removed when the process exits.
inline std::filesystem::path scratch_dir() {
    struct Dir {
        std::filesystem::path path;
        Dir() : path(std::filesystem::temp_directory_path() / ("celer-test-" + std::to_string(::getpid()))) {
            std::filesystem::create_directories(path);
        }
        ~Dir() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    };
    static const Dir dir;
    return dir.path;
}

// Writes (once per process) a synthetic model and returns its path.
inline std::string synth_model(const std::string& shape, const std::string& type, std::optional<uint32_t> layers = {}) {
    const auto path = scratch_dir() / (shape + "-" + type + (layers ? "-l" + std::to_string(*layers) : "") + ".gguf");
    if (!std::filesystem::exists(path)) {
        synth::Options o;
        o.shape = shape;
        o.type = type;
        o.n_threads = 2;
        o.n_layer = layers;
        synth::write_model(o, path.string());
    }
    return path.string();
}

inline std::string shared_dir() { return CELER_SHARED_DIR; }
inline bool have_shared() { return std::filesystem::exists(shared_dir() + "/models/stories260K.gguf"); }

// Normalised mean squared error: sum (a - b)^2 / sum b^2.
inline double nmse(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return den > 0 ? num / den : num;
}

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1, float hi = 1) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

}  // namespace celer::test
