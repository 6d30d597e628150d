#include "tensor/dequant.h"

#include <type_traits>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace celer {
namespace {

float half_to_float(uint16_t h) { return fp16_to_fp32(h); }
float bfloat_to_float(uint16_t h) { return bf16_to_fp32(h); }
void half_row_to_float(const uint16_t* h, float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
}

#include "tensor/dequant_blocks.inc"

}  // namespace

void dequantize_row(TensorType type, const void* src, float* dst, size_t n) { dequant_any(type, src, dst, n); }

}  // namespace celer
