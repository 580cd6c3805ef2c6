// CPU reference (de)quantization of GGUF block formats, bit-exact with ggml's block layouts.
// Knows nothing of files or devices; written for clarity (it is the oracle for shader tests).
#include "engine/gguf/quant.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "common/error.hpp"

namespace vkllm::gguf {
namespace {

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t load_u32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void store_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
float load_f16(const uint8_t* p) { return fp16_to_fp32(load_u16(p)); }

// The smallest half >= v (v >= 0), capped at the largest finite half, so a scale computed
// from it never under-covers the range it was derived from.
uint16_t fp16_round_up(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 65504.0f) return 0x7bff;
  uint16_t h = fp32_to_fp16(v);
  if (fp16_to_fp32(h) < v) ++h;
  return h;
}

int round_clamp(float v, int lo, int hi) {
  if (!std::isfinite(v)) return v > 0 ? hi : lo;  // NaN/inf inputs give clamped, valid codes
  float r = std::nearbyint(v);
  if (r < static_cast<float>(lo)) return lo;
  if (r > static_cast<float>(hi)) return hi;
  return static_cast<int>(r);
}

// ---- legacy 32-element blocks ----

// Symmetric quant (q4_0: bits 4, q5_0: bits 5): d = (value of largest magnitude) / -2^(bits-1),
// so that value maps exactly to code 0 and the rest round to nearest.
void quantize_sym(const float* x, int bits, float& d_out, uint8_t* codes) {
  float amax = 0.0f, vmax = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  const int half = 1 << (bits - 1);
  const float d = fp16_to_fp32(fp32_to_fp16(vmax / static_cast<float>(-half)));
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 32; ++i) codes[i] = static_cast<uint8_t>(round_clamp(x[i] * id + half, 0, 2 * half - 1));
  d_out = d;
}

// Asymmetric quant (q4_1, q5_1): x ~= q * d + m, m = min, d = (max - min) / (2^bits - 1).
void quantize_asym(const float* x, int bits, float& d_out, float& m_out, uint8_t* codes) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < 32; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const int qmax = (1 << bits) - 1;
  const float m = fp16_to_fp32(fp32_to_fp16(lo));
  const float d = fp16_to_fp32(fp16_round_up((hi - m) / static_cast<float>(qmax)));
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 32; ++i) codes[i] = static_cast<uint8_t>(round_clamp((x[i] - m) * id, 0, qmax));
  d_out = d;
  m_out = m;
}

// Packs 32 codes into qs[16] nibbles (element j low, j + 16 high) and, for 5-bit codes, qh.
void pack_nibbles(const uint8_t* codes, uint8_t* qs, uint32_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((codes[j] & 0xF) | ((codes[j + 16] & 0xF) << 4));
    h |= uint32_t{(codes[j] >> 4) & 1u} << j;
    h |= uint32_t{(codes[j + 16] >> 4) & 1u} << (j + 16);
  }
  if (qh) *qh = h;
}

// Code of element i (0..31) from qs nibbles plus optional qh fifth bit.
int legacy_code(const uint8_t* qs, uint32_t qh, int i) {
  const int low = i < 16 ? (qs[i] & 0xF) : (qs[i - 16] >> 4);
  return low | static_cast<int>(((qh >> i) & 1u) << 4);
}

void dequant_block(TensorType type, const uint8_t* b, float* y) {
  switch (type) {
    case TensorType::kQ4_0: {
      const float d = load_f16(b);
      for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(legacy_code(b + 2, 0, i) - 8) * d;
      return;
    }
    case TensorType::kQ4_1: {
      const float d = load_f16(b), m = load_f16(b + 2);
      for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(legacy_code(b + 4, 0, i)) * d + m;
      return;
    }
    case TensorType::kQ5_0: {
      const float d = load_f16(b);
      const uint32_t qh = load_u32(b + 2);
      for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(legacy_code(b + 6, qh, i) - 16) * d;
      return;
    }
    case TensorType::kQ5_1: {
      const float d = load_f16(b), m = load_f16(b + 2);
      const uint32_t qh = load_u32(b + 4);
      for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(legacy_code(b + 8, qh, i)) * d + m;
      return;
    }
    case TensorType::kQ8_0: {
      const float d = load_f16(b);
      for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(static_cast<int8_t>(b[2 + i])) * d;
      return;
    }
    default:
      break;
  }
}

void quant_block(TensorType type, const float* x, uint8_t* b) {
  uint8_t codes[32];
  float d = 0.0f, m = 0.0f;
  uint32_t qh = 0;
  switch (type) {
    case TensorType::kQ4_0:
      quantize_sym(x, 4, d, codes);
      store_u16(b, fp32_to_fp16(d));
      pack_nibbles(codes, b + 2, nullptr);
      return;
    case TensorType::kQ4_1:
      quantize_asym(x, 4, d, m, codes);
      store_u16(b, fp32_to_fp16(d));
      store_u16(b + 2, fp32_to_fp16(m));
      pack_nibbles(codes, b + 4, nullptr);
      return;
    case TensorType::kQ5_0:
      quantize_sym(x, 5, d, codes);
      store_u16(b, fp32_to_fp16(d));
      pack_nibbles(codes, b + 6, &qh);
      store_u32(b + 2, qh);
      return;
    case TensorType::kQ5_1:
      quantize_asym(x, 5, d, m, codes);
      store_u16(b, fp32_to_fp16(d));
      store_u16(b + 2, fp32_to_fp16(m));
      pack_nibbles(codes, b + 8, &qh);
      store_u32(b + 4, qh);
      return;
    case TensorType::kQ8_0: {
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      const uint16_t dh = fp16_round_up(amax / 127.0f);
      const float dd = fp16_to_fp32(dh);
      const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
      store_u16(b, dh);
      for (int i = 0; i < 32; ++i) {
        b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(round_clamp(x[i] * id, -127, 127)));
      }
      return;
    }
    default:
      break;
  }
}

// ---- K-quants (256-element super-blocks) ----

// 6-bit scale sc[j] and min m[j] of sub-block j (0..7) from the 12 packed bytes:
// bytes 0-3: sc[0..3] low 6 bits, top 2 bits = sc[4..7] >> 4
// bytes 4-7: m[0..3]  low 6 bits, top 2 bits = m[4..7] >> 4
// bytes 8-11: low nibble = sc[4..7] & 15, high nibble = m[4..7] & 15
void unpack_scale_min(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void pack_scale_min(const int* sc, const int* m, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

// q4_K (bits 4) / q5_K (bits 5) dequantization. qh is null for q4_K.
void dequant_k45(const uint8_t* b, float* y, bool five) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = five ? b + 16 : nullptr;
  const uint8_t* qs = five ? b + 48 : b + 16;
  for (int e = 0; e < 256; ++e) {
    const int sub = e / 32;
    const uint8_t byte = qs[32 * (e / 64) + e % 32];
    int q = (e % 64) < 32 ? (byte & 0xF) : (byte >> 4);
    if (qh) q |= ((qh[e % 32] >> sub) & 1) << 4;
    int sc = 0, m = 0;
    unpack_scale_min(scales, sub, sc, m);
    y[e] = d * static_cast<float>(sc) * static_cast<float>(q) - dmin * static_cast<float>(m);
  }
}

// Per sub-block of 32: offset = -min(0, min x) (quantized up with dmin so nothing clips at the
// bottom), then the step covering [-offset, max] (quantized up with d), then round-to-nearest.
void quant_k45(const float* x, uint8_t* b, bool five) {
  const int qmax = five ? 31 : 15;
  float lows[8], highs[8];
  float max_low = 0.0f;
  for (int j = 0; j < 8; ++j) {
    float lo = 0.0f, hi = x[32 * j];
    for (int i = 0; i < 32; ++i) {
      lo = std::min(lo, x[32 * j + i]);
      hi = std::max(hi, x[32 * j + i]);
    }
    lows[j] = -lo;  // >= 0
    highs[j] = hi;
    max_low = std::max(max_low, lows[j]);
  }
  const uint16_t dmin_h = fp16_round_up(max_low / 63.0f);
  const float dmin = fp16_to_fp32(dmin_h);
  int ms[8], scs[8];
  float offsets[8], needs[8], max_need = 0.0f;
  for (int j = 0; j < 8; ++j) {
    ms[j] = dmin > 0.0f ? round_clamp(std::ceil(lows[j] / dmin), 0, 63) : 0;
    offsets[j] = dmin * static_cast<float>(ms[j]);
    needs[j] = std::max(0.0f, (highs[j] + offsets[j]) / static_cast<float>(qmax));
    max_need = std::max(max_need, needs[j]);
  }
  const uint16_t d_h = fp16_round_up(max_need / 63.0f);
  const float d = fp16_to_fp32(d_h);
  for (int j = 0; j < 8; ++j) scs[j] = d > 0.0f ? round_clamp(std::ceil(needs[j] / d), 0, 63) : 0;

  std::memset(b, 0, five ? 176 : 144);
  store_u16(b, d_h);
  store_u16(b + 2, dmin_h);
  pack_scale_min(scs, ms, b + 4);
  uint8_t* qh = five ? b + 16 : nullptr;
  uint8_t* qs = five ? b + 48 : b + 16;
  for (int e = 0; e < 256; ++e) {
    const int sub = e / 32;
    const float step = d * static_cast<float>(scs[sub]);
    const int q = step > 0.0f ? round_clamp((x[e] + offsets[sub]) / step, 0, qmax) : 0;
    uint8_t& byte = qs[32 * (e / 64) + e % 32];
    byte |= static_cast<uint8_t>((e % 64) < 32 ? (q & 0xF) : ((q & 0xF) << 4));
    if (qh) qh[e % 32] |= static_cast<uint8_t>(((q >> 4) & 1) << sub);
  }
}

// Symmetric K-quants (q3_K, q6_K): each of the 16 sub-blocks of 16 gets step = amax / codes
// (its largest magnitude on the top code); returns the largest step.
float symmetric_steps16(const float* x, float codes, float* steps) {
  float max_step = 0.0f;
  for (int j = 0; j < 16; ++j) {
    float amax = 0.0f;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[16 * j + i]));
    steps[j] = amax / codes;
    max_step = std::max(max_step, steps[j]);
  }
  return max_step;
}

// q2_K and q3_K: element e lies in half n = e / 128 at 2-bit position 2 * ((e % 128) / 32) of
// qs[32 * n + e % 32]; its sub-block of 16 is e / 16.

// q2_K: scales[j] holds sub-block j's scale (low nibble) and min (high nibble);
// x = d * sc * q - dmin * m.
void dequant_q2k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16(b + 80), dmin = load_f16(b + 82);
  for (int e = 0; e < 256; ++e) {
    const int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const uint8_t sm = scales[e / 16];
    y[e] = d * static_cast<float>(sm & 0xF) * static_cast<float>(q) -
           dmin * static_cast<float>(sm >> 4);
  }
}

// As quant_k45 with sub-blocks of 16 and 4-bit scales and mins: the offset -min(0, min x)
// quantized up with dmin, the step covering [-offset, max] quantized up with d, round-to-nearest.
void quant_q2k(const float* x, uint8_t* b) {
  float lows[16], highs[16], max_low = 0.0f;
  for (int j = 0; j < 16; ++j) {
    float lo = 0.0f, hi = x[16 * j];
    for (int i = 0; i < 16; ++i) {
      lo = std::min(lo, x[16 * j + i]);
      hi = std::max(hi, x[16 * j + i]);
    }
    lows[j] = -lo;
    highs[j] = hi;
    max_low = std::max(max_low, lows[j]);
  }
  const uint16_t dmin_h = fp16_round_up(max_low / 15.0f);
  const float dmin = fp16_to_fp32(dmin_h);
  int ms[16];
  float offsets[16], needs[16], max_need = 0.0f;
  for (int j = 0; j < 16; ++j) {
    ms[j] = dmin > 0.0f ? round_clamp(std::ceil(lows[j] / dmin), 0, 15) : 0;
    offsets[j] = dmin * static_cast<float>(ms[j]);
    needs[j] = std::max(0.0f, (highs[j] + offsets[j]) / 3.0f);
    max_need = std::max(max_need, needs[j]);
  }
  const uint16_t d_h = fp16_round_up(max_need / 15.0f);
  const float d = fp16_to_fp32(d_h);
  std::memset(b, 0, 84);
  int scs[16];
  for (int j = 0; j < 16; ++j) {
    scs[j] = d > 0.0f ? round_clamp(std::ceil(needs[j] / d), 0, 15) : 0;
    b[j] = static_cast<uint8_t>(scs[j] | (ms[j] << 4));
  }
  store_u16(b + 80, d_h);
  store_u16(b + 82, dmin_h);
  for (int e = 0; e < 256; ++e) {
    const float step = d * static_cast<float>(scs[e / 16]);
    const int q = step > 0.0f ? round_clamp((x[e] + offsets[e / 16]) / step, 0, 3) : 0;
    b[16 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>(q << (2 * ((e % 128) / 32)));
  }
}

// q3_K's 6-bit scale j (0..15, stored + 32) from its 12 packed bytes: the low nibble is byte j
// (j < 8) or the high nibble of byte j - 8; the top two bits are bits 2 * (j / 4) of byte
// 8 + j % 4.
int q3k_scale(const uint8_t* s, int j) {
  const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// q3_K: 3-bit q = the 2 bits in qs, plus 4 when bit e / 32 of hmask[e % 32] is set;
// x = d * scale[e / 16] * (q - 4).
void dequant_q3k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* scales = b + 96;
  const float d = load_f16(b + 108);
  for (int e = 0; e < 256; ++e) {
    int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    if ((hmask[e % 32] >> (e / 32)) & 1) q += 4;
    const float dl = d * static_cast<float>(q3k_scale(scales, e / 16));
    y[e] = dl * static_cast<float>(q - 4);
  }
}

// Per sub-block of 16: step = amax / 3 (codes -3..3 of the 3-bit range -4..3), the step
// quantized up to a 5-bit multiple of the super-block d (scales 0..31 of the signed 6-bit range).
void quant_q3k(const float* x, uint8_t* b) {
  float steps[16];
  const float max_step = symmetric_steps16(x, 3.0f, steps);
  const uint16_t d_h = fp16_round_up(max_step / 31.0f);
  const float d = fp16_to_fp32(d_h);
  std::memset(b, 0, 110);
  int scs[16];
  for (int j = 0; j < 16; ++j) {
    scs[j] = d > 0.0f ? round_clamp(std::ceil(steps[j] / d), 0, 31) : 0;
    const int u = scs[j] + 32;  // stored unsigned, 6 bits
    uint8_t* s = b + 96;
    s[j < 8 ? j : j - 8] |= static_cast<uint8_t>(j < 8 ? (u & 0xF) : ((u & 0xF) << 4));
    s[8 + j % 4] |= static_cast<uint8_t>(((u >> 4) & 3) << (2 * (j / 4)));
  }
  store_u16(b + 108, d_h);
  for (int e = 0; e < 256; ++e) {
    const float step = d * static_cast<float>(scs[e / 16]);
    const int q = (step > 0.0f ? round_clamp(x[e] / step, -4, 3) : 0) + 4;  // 0..7
    b[32 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>((q & 3) << (2 * ((e % 128) / 32)));
    if (q & 4) b[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
  }
}

// ---- iq4_nl and iq4_xs: 4-bit codes into a fixed non-linear table of int8 levels ----

constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

// The code whose level is nearest to v (levels in units of the block's scale).
int iq4_nearest(float v) {
  int best = 0;
  for (int i = 1; i < 16; ++i) {
    if (std::fabs(v - kIq4Levels[i]) < std::fabs(v - kIq4Levels[best])) best = i;
  }
  return best;
}

// 32 elements from 16 code bytes (element j < 16: low nibble of qs[j], j + 16: high nibble).
void dequant_iq4_32(const uint8_t* qs, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4Levels[qs[j] & 0xF]);
    y[j + 16] = d * static_cast<float>(kIq4Levels[qs[j] >> 4]);
  }
}
void quant_iq4_32(const float* x, float d, uint8_t* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>(iq4_nearest(x[j] * id) | (iq4_nearest(x[j + 16] * id) << 4));
  }
}
// The value of largest magnitude, with its sign: the block's scale maps it to level -127.
float signed_absmax(const float* x, int n) {
  float m = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(m)) m = x[i];
  }
  return m;
}

// iq4_nl: f16 d | u8 qs[16]; x = d * level[q].
void dequant_iq4nl(const uint8_t* b, float* y) { dequant_iq4_32(b + 2, load_f16(b), y); }
void quant_iq4nl(const float* x, uint8_t* b) {
  const uint16_t d_h = fp32_to_fp16(signed_absmax(x, 32) / -127.0f);
  store_u16(b, d_h);
  quant_iq4_32(x, fp16_to_fp32(d_h), b + 2);
}

// mxfp4: u8 e | u8 qs[16]; x = 2^(e - 128) * level[q] (ggml's E8M0 "half" scale: the levels are
// FP4 E2M1 values doubled). The quantizer takes e = floor(log2(max |x|)) - 2 + 127, the largest
// level (12) then within a factor of two of the largest magnitude, and each code nearest.
constexpr int8_t kMxfp4Levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
float mxfp4_scale(uint8_t e) { return std::ldexp(1.0f, static_cast<int>(e) - 128); }
int mxfp4_nearest(float v) {
  int best = 0;
  for (int i = 1; i < 16; ++i) {
    if (std::fabs(v - kMxfp4Levels[i]) < std::fabs(v - kMxfp4Levels[best])) best = i;
  }
  return best;
}
void dequant_mxfp4(const uint8_t* b, float* y) {
  const float d = mxfp4_scale(b[0]);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kMxfp4Levels[b[1 + j] & 0xF]);
    y[j + 16] = d * static_cast<float>(kMxfp4Levels[b[1 + j] >> 4]);
  }
}
void quant_mxfp4(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const int e = amax > 0.0f ? std::clamp(static_cast<int>(std::floor(std::log2(amax))) - 2 + 127, 0, 255) : 0;
  b[0] = static_cast<uint8_t>(e);
  const float id = 1.0f / mxfp4_scale(b[0]);
  for (int j = 0; j < 16; ++j) {
    b[1 + j] = static_cast<uint8_t>(mxfp4_nearest(x[j] * id) | (mxfp4_nearest(x[j + 16] * id) << 4));
  }
}

// iq4_xs: f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]; sub-block j (32 elements) has the
// 6-bit scale ls = (4 bits of scales_l[j / 2] at 4 * (j % 2)) | (bits 2j, 2j + 1 of scales_h) << 4,
// and x = d * (ls - 32) * level[q] with qs[16j .. 16j + 15] laid out as iq4_nl's.
int iq4xs_scale(const uint8_t* b, int j) {
  const int high = (load_u16(b + 2) >> (2 * j)) & 3;
  return (((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (high << 4)) - 32;
}
void dequant_iq4xs(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 8; ++j) {
    dequant_iq4_32(b + 8 + 16 * j, d * static_cast<float>(iq4xs_scale(b, j)), y + 32 * j);
  }
}
// Each sub-block's own scale (signed, its value of largest magnitude at level -127) as a 6-bit
// multiple of d, d rounded up so that none passes 31.
void quant_iq4xs(const float* x, uint8_t* b) {
  float want[8], max_abs = 0.0f;
  for (int j = 0; j < 8; ++j) {
    want[j] = signed_absmax(x + 32 * j, 32) / -127.0f;
    max_abs = std::max(max_abs, std::fabs(want[j]));
  }
  const uint16_t d_h = fp16_round_up(max_abs / 31.0f);
  const float d = fp16_to_fp32(d_h);
  std::memset(b, 0, 136);
  store_u16(b, d_h);
  uint16_t scales_h = 0;
  for (int j = 0; j < 8; ++j) {
    const int ls = d > 0.0f ? round_clamp(want[j] / d, -32, 31) : 0;
    const int u = ls + 32;
    b[4 + j / 2] |= static_cast<uint8_t>((u & 0xF) << (4 * (j % 2)));
    scales_h |= static_cast<uint16_t>(((u >> 4) & 3) << (2 * j));
    quant_iq4_32(x + 32 * j, d * static_cast<float>(ls), b + 8 + 16 * j);
  }
  store_u16(b + 2, scales_h);
}

// q6_K element e: half n = e / 128, r = e % 128, group g = r / 32, l = r % 32.
// Low 4 bits: ql[64n + l] (g = 0, 2) or ql[64n + 32 + l] (g = 1, 3); low nibble for g < 2,
// high nibble for g >= 2. High 2 bits: bits 2g..2g+1 of qh[32n + l]. Scale: scales[e / 16].
struct Q6Index {
  int ql_index, ql_shift, qh_index, qh_shift;
};
Q6Index q6_index(int e) {
  const int n = e / 128, r = e % 128, g = r / 32, l = r % 32;
  return {64 * n + (g % 2) * 32 + l, g < 2 ? 0 : 4, 32 * n + l, 2 * g};
}

void dequant_q6k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int e = 0; e < 256; ++e) {
    const Q6Index ix = q6_index(e);
    const int q = ((ql[ix.ql_index] >> ix.ql_shift) & 0xF) | (((qh[ix.qh_index] >> ix.qh_shift) & 3) << 4);
    y[e] = d * static_cast<float>(scales[e / 16]) * static_cast<float>(q - 32);
  }
}

// Per sub-block of 16: step = amax / 31 (codes -31..31 of the 6-bit range -32..31), step
// quantized to an int8 multiple of the super-block d (rounded up: never clips).
void quant_q6k(const float* x, uint8_t* b) {
  float steps[16];
  const float max_step = symmetric_steps16(x, 31.0f, steps);
  const uint16_t d_h = fp16_round_up(max_step / 127.0f);
  const float d = fp16_to_fp32(d_h);
  std::memset(b, 0, 210);
  int scs[16];
  for (int j = 0; j < 16; ++j) {
    scs[j] = d > 0.0f ? round_clamp(std::ceil(steps[j] / d), 0, 127) : 0;
    b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(scs[j]));
  }
  store_u16(b + 208, d_h);
  for (int e = 0; e < 256; ++e) {
    const float step = d * static_cast<float>(scs[e / 16]);
    const int q = (step > 0.0f ? round_clamp(x[e] / step, -32, 31) : 0) + 32;
    const Q6Index ix = q6_index(e);
    b[ix.ql_index] |= static_cast<uint8_t>((q & 0xF) << ix.ql_shift);
    b[128 + ix.qh_index] |= static_cast<uint8_t>(((q >> 4) & 3) << ix.qh_shift);
  }
}

const TypeTraits& checked_traits(TensorType type, const char* what) {
  const TypeTraits& t = traits(type);
  if (!t.cpu_supported) {
    throw Unsupported(fmt::format("gguf: no CPU {} for tensor type {}", what, t.name));
  }
  return t;
}

}  // namespace

float fp16_to_fp32(uint16_t h) noexcept {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal, exact
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t fp32_to_fp16(float f) noexcept {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf or NaN (NaN keeps a payload bit so it stays NaN)
    return static_cast<uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0u));
  }
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {  // below 2^-14: subnormal half; x * 2^24 is exact, nearbyint rounds even
    const float scaled = std::bit_cast<float>(a) * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  uint32_t h = ((((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu));
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
  return static_cast<uint16_t>(sign | h);
}

float bf16_to_fp32(uint16_t b) noexcept { return std::bit_cast<float>(uint32_t{b} << 16); }

uint16_t fp32_to_bf16(float f) noexcept {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

void dequantize(TensorType type, std::span<const uint8_t> src, std::span<float> dst) {
  const TypeTraits& t = checked_traits(type, "dequantization");
  if (src.size() % t.block_bytes != 0 || dst.size() / t.block_size != src.size() / t.block_bytes ||
      dst.size() % t.block_size != 0) {
    throw InvalidRequest(fmt::format("gguf: dequantize {}: {} bytes do not make {} elements",
                                     t.name, src.size(), dst.size()));
  }
  const size_t blocks = src.size() / t.block_bytes;
  for (size_t i = 0; i < blocks; ++i) {
    const uint8_t* b = src.data() + i * t.block_bytes;
    float* y = dst.data() + i * t.block_size;
    switch (type) {
      case TensorType::kF32: std::memcpy(y, b, 4); break;
      case TensorType::kF16: *y = fp16_to_fp32(load_u16(b)); break;
      case TensorType::kBF16: *y = bf16_to_fp32(load_u16(b)); break;
      case TensorType::kQ4_K: dequant_k45(b, y, false); break;
      case TensorType::kQ5_K: dequant_k45(b, y, true); break;
      case TensorType::kQ6_K: dequant_q6k(b, y); break;
      case TensorType::kQ2_K: dequant_q2k(b, y); break;
      case TensorType::kQ3_K: dequant_q3k(b, y); break;
      case TensorType::kIQ4_NL: dequant_iq4nl(b, y); break;
      case TensorType::kIQ4_XS: dequant_iq4xs(b, y); break;
      case TensorType::kMXFP4: dequant_mxfp4(b, y); break;
      default: dequant_block(type, b, y); break;
    }
  }
}

std::vector<float> dequantize(TensorType type, std::span<const uint8_t> src) {
  const TypeTraits& t = checked_traits(type, "dequantization");
  std::vector<float> out(src.size() / t.block_bytes * t.block_size);
  dequantize(type, src, out);
  return out;
}

void quantize(TensorType type, std::span<const float> src, std::span<uint8_t> dst) {
  const TypeTraits& t = checked_traits(type, "quantization");
  if (src.size() % t.block_size != 0 || dst.size() % t.block_bytes != 0 ||
      src.size() / t.block_size != dst.size() / t.block_bytes) {
    throw InvalidRequest(fmt::format("gguf: quantize {}: {} elements do not fill {} bytes",
                                     t.name, src.size(), dst.size()));
  }
  const size_t blocks = src.size() / t.block_size;
  for (size_t i = 0; i < blocks; ++i) {
    const float* x = src.data() + i * t.block_size;
    uint8_t* b = dst.data() + i * t.block_bytes;
    switch (type) {
      case TensorType::kF32: std::memcpy(b, x, 4); break;
      case TensorType::kF16: store_u16(b, fp32_to_fp16(*x)); break;
      case TensorType::kBF16: store_u16(b, fp32_to_bf16(*x)); break;
      case TensorType::kQ4_K: quant_k45(x, b, false); break;
      case TensorType::kQ5_K: quant_k45(x, b, true); break;
      case TensorType::kQ6_K: quant_q6k(x, b); break;
      case TensorType::kQ2_K: quant_q2k(x, b); break;
      case TensorType::kQ3_K: quant_q3k(x, b); break;
      case TensorType::kIQ4_NL: quant_iq4nl(x, b); break;
      case TensorType::kIQ4_XS: quant_iq4xs(x, b); break;
      case TensorType::kMXFP4: quant_mxfp4(x, b); break;
      default: quant_block(type, x, b); break;
    }
  }
}

std::vector<uint8_t> quantize(TensorType type, std::span<const float> src) {
  const TypeTraits& t = checked_traits(type, "quantization");
  if (src.size() % t.block_size != 0) {
    throw InvalidRequest(fmt::format("gguf: quantize {}: {} elements is not a multiple of {}",
                                     t.name, src.size(), t.block_size));
  }
  std::vector<uint8_t> out(src.size() / t.block_size * t.block_bytes);
  quantize(type, src, out);
  return out;
}

}  // namespace vkllm::gguf
