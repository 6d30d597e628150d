// libFuzzer target: arbitrary bytes as a safetensors file, as `celer convert` reads a
// downloaded checkpoint. Parsing either throws celer::Error or gives tensors whose every value
// can be read inside the bytes (ASan checks the reads).
#include <cstddef>
#include <cstdint>
#include <span>

#include "tools/safetensors.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = celer::safetensors::File::parse("fuzz.safetensors", std::span<const uint8_t>(data, size));
        float sink = 0;
        for (const auto& t : f.tensors()) {
            const uint64_t n = t.elements();
            if (n > 0) sink += t.at(0) + t.at(n - 1);
        }
        (void)sink;
    } catch (const celer::Error&) {
    }
    return 0;
}
