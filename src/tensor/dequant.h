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

}  // namespace celer
