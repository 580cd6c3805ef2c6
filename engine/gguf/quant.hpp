// CPU reference (de)quantization of GGUF block formats, bit-exact with ggml's block layouts.
// Knows nothing of files or devices; written for clarity (it is the oracle for shader tests).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/gguf/types.hpp"

namespace vkllm::gguf {

// IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN, overflow -> inf).
float fp16_to_fp32(uint16_t h) noexcept;
uint16_t fp32_to_fp16(float f) noexcept;
float bf16_to_fp32(uint16_t b) noexcept;
uint16_t fp32_to_bf16(float f) noexcept;

// Block layouts (little-endian, packed; f16 = IEEE half), as in ggml-common.h:
//   q4_0  (32 el, 18 B): f16 d | u8 qs[16]         x = (q - 8) * d
//   q4_1  (32 el, 20 B): f16 d, f16 m | u8 qs[16]  x = q * d + m
//   q5_0  (32 el, 22 B): f16 d | u32 qh | u8 qs[16]           x = (q - 16) * d
//   q5_1  (32 el, 24 B): f16 d, f16 m | u32 qh | u8 qs[16]    x = q * d + m
//   q8_0  (32 el, 34 B): f16 d | i8 qs[32]         x = q * d
//   For q4_*/q5_*: element j < 16 is the low nibble of qs[j], element j + 16 the high
//   nibble; q5's fifth bit of element i is bit i of qh.
//   q4_K (256 el, 144 B): f16 d, f16 dmin | u8 scales[12] | u8 qs[128]
//   q5_K (256 el, 176 B): f16 d, f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//     8 sub-blocks of 32 with 6-bit scale sc and min m packed in scales[12]; element e:
//     x = d * sc[e/32] * q - dmin * m[e/32]; q's low 4 bits sit in qs[32*(e/64) + e%32]
//     (low nibble when e%64 < 32, else high); q5_K's bit 4 is bit (e/32) of qh[e%32].
//   q6_K (256 el, 210 B): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//     x = d * scales[e/16] * (q - 32), q 6-bit: see quant.cpp for the ql/qh interleave.
//   q2_K (256 el, 84 B): u8 scales[16] | u8 qs[64] | f16 d, f16 dmin
//     x = d * (scales[e/16] & 15) * q - dmin * (scales[e/16] >> 4); q 2-bit at bits
//     2 * ((e%128)/32) of qs[32*(e/128) + e%32].
//   q3_K (256 el, 110 B): u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d
//     x = d * (sc[e/16] - 32) * (q - 4); q's low 2 bits as q2_K's (qs), bit 2 is bit e/32 of
//     hmask[e%32]; the 6-bit sc packed in scales[12] (see quant.cpp).
//   iq4_nl (32 el, 18 B): f16 d | u8 qs[16]   x = d * level[q], q as q4_0's nibbles and
//     level the fixed table {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
//     89, 113}
//   iq4_xs (256 el, 136 B): f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]: 8 sub-blocks
//     of 32 as iq4_nl's, each with the 6-bit scale (ls - 32) * d (see quant.cpp)
//   mxfp4 (32 el, 17 B): u8 e | u8 qs[16]   x = 2^(e - 128) * level[q], q as q4_0's nibbles
//     and level the doubled FP4 (E2M1) values {0, 1, 2, 3, 4, 6, 8, 12, -0, -1, -2, -3, -4,
//     -6, -8, -12}; e an E8M0 exponent (gpt-oss's experts)
// bf16/f16/f32: one element per "block", little-endian.

// Dequantizes `src` (whole blocks of `type`) into `dst`, which must hold exactly
// blocks * block_size floats. Throws Unsupported for types without a CPU path and
// InvalidRequest when the sizes disagree.
void dequantize(TensorType type, std::span<const uint8_t> src, std::span<float> dst);
std::vector<float> dequantize(TensorType type, std::span<const uint8_t> src);

// Quantizes `src` (a multiple of the block size, finite values) into `dst`, which must hold
// exactly the blocks' bytes. Round-to-nearest; K-quant scales from a per-sub-block min/max
// search. Throws like dequantize.
void quantize(TensorType type, std::span<const float> src, std::span<uint8_t> dst);
std::vector<uint8_t> quantize(TensorType type, std::span<const float> src);

}  // namespace vkllm::gguf
