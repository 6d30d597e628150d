// One SIMD kernel target, compiled once per instruction set by CMake (see the kernel targets in
// CMakeLists.txt): CELER_TARGET names it (avx2, avx512, avx512vnni, avx512bf16 on x86-64; neon on
// AArch64, where NEON is part of the base instruction set) and the compile flags pick the
// instructions. Its functions run only after dispatch.cpp has checked the CPU for them.
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "kernels/cpu/kernels.h"
#include "tensor/blocks.h"

#define CELER_STR2(x) #x
#define CELER_STR(x) CELER_STR2(x)
#define CELER_CAT2(a, b) a##b
#define CELER_CAT(a, b) CELER_CAT2(a, b)

namespace celer::kernels {
namespace {

inline float bfloat_to_float(uint16_t h) {
    const uint32_t x = uint32_t(h) << 16;
    float f;
    __builtin_memcpy(&f, &x, 4);
    return f;
}
#if defined(__aarch64__)
// AArch64 converts between fp16 and fp32 in its base instructions (fcvt, fcvtl, fcvtn), to
// nearest even in the default rounding mode, as fp32_to_fp16 rounds.
inline float half_to_float(uint16_t h) {
    __fp16 x;
    __builtin_memcpy(&x, &h, 2);
    return float(x);
}
inline void half_row_to_float(const uint16_t* h, float* y, size_t n) {
    const size_t n8 = n / 8 * 8;
    size_t i = 0;
    for (; i < n8; i += 8) {
        const float16x8_t v = vreinterpretq_f16_u16(vld1q_u16(h + i));
        vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(v)));
        vst1q_f32(y + i + 4, vcvt_high_f32_f16(v));
    }
    for (; i < n; ++i) y[i] = half_to_float(h[i]);
}
inline void float_row_to_half(const float* x, uint16_t* y, size_t n) {
    const size_t n8 = n / 8 * 8;
    size_t i = 0;
    for (; i < n8; i += 8)
        vst1q_u16(y + i, vreinterpretq_u16_f16(vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4))));
    for (; i < n; ++i) {
        const __fp16 v = x[i];
        __builtin_memcpy(y + i, &v, 2);
    }
}
#else
inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
// F16C converts 8 halves per instruction; AVX-512F 16.
inline void half_row_to_float(const uint16_t* h, float* y, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
#endif
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) y[i] = _cvtsh_ss(h[i]);
}

// y = x rounded to fp16, to nearest even (as fp32_to_fp16).
inline void float_row_to_half(const float* x, uint16_t* y, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i) y[i] = uint16_t(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x[i]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0));
}
#endif

#if defined(__AVX512F__)
#include "kernels/cpu/matvec_avx512.inc"
#elif defined(__AVX2__)
#include "kernels/cpu/matvec_avx2.inc"
#else
template <TensorType T>
inline constexpr bool kFusedMatvec = false;
template <TensorType T>
void fused_matvec(const MatmulArgs&) {}
#endif
#if defined(__AVX512F__) || !defined(__AVX2__)
// Only AVX2 has a prefill tile of its own (matvec_avx2.inc); the others use dot_tile.
constexpr bool kNativeTile = false;
template <int R, int C>
void dot_tile_native(const float*, size_t, const float*, size_t, size_t, float*, size_t) {}
#endif

#if defined(__AVX512VNNI__)
#include "kernels/cpu/gemm_vnni.inc"
#endif
#if defined(__AVX512BF16__)
#include "kernels/cpu/gemm_bf16.inc"
#endif

#include "kernels/cpu/vector_kernels.inc"

constexpr CpuKernels kTable = make_vector_table(CELER_STR(CELER_TARGET), std::make_index_sequence<kTypeCount>{});

}  // namespace

const CpuKernels& CELER_CAT(CELER_TARGET, _kernels)() { return kTable; }

}  // namespace celer::kernels
