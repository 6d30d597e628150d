// Scalar dequantisation: the reference every kernel is tested against.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/types.h"

namespace celer {

// Writes n floats (n a multiple of the type's block size) decoded from src.
void dequantize_row(TensorType type, const void* src, float* dst, size_t n);

// Encodes n floats into blocks of the given type (reference quantisers, scalar).
void quantize_row(TensorType type, const float* src, void* dst, size_t n);
// n floats (a multiple of 32) as Q4_0 blocks (read back by dequantize_row) whose scale is never
// negative: d = max|x| / 7.5, q - 8 = x / d rounded to nearest and clamped to [-8, 7]. At most
// d / 2 = max|x| / 15 off everywhere (Q4_0's own rounding puts the largest magnitude on -8 and
// may clamp the other sign by up to max|x| / 8). The KV cache's 4-bit values: attention folds
// the scale into an unsigned weight.
void quantize_row_q4_0_unsigned_scale(const float* src, void* dst, size_t n);

}  // namespace celer
