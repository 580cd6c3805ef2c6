// Tests of the gguf type table and CPU (de)quantization: known bytes -> known values per
// type (layout), loop-style oracles on random blocks, and quantize round-trip error bounds.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/gguf/types.hpp"

using namespace vkllm::gguf;

namespace {

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}

// ggml-style loop oracles (written from the block descriptions, structured like ggml's
// dequantize_row_* loops rather than our per-element index formulas).
void oracle_q4k_q5k(const uint8_t* b, float* y, bool five) {
  const float d = fp16_to_fp32(static_cast<uint16_t>(b[0] | b[1] << 8));
  const float dmin = fp16_to_fp32(static_cast<uint16_t>(b[2] | b[3] << 8));
  const uint8_t* s = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* q = five ? b + 48 : b + 16;
  auto scale_min = [&](int j, int& sc, int& m) {
    if (j < 4) {
      sc = s[j] & 63;
      m = s[j + 4] & 63;
    } else {
      sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
  };
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    int sc, m;
    scale_min(is, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min(is + 1, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
    q += 32;
    is += 2;
    u1 <<= 2;
    u2 <<= 2;
  }
}

void oracle_q6k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = fp16_to_fp32(static_cast<uint16_t>(b[208] | b[209] << 8));
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// iq4_xs in ggml's loop order: per sub-block, the scale from scales_l/scales_h, then 16 bytes
// giving elements j and j + 16.
void oracle_iq4xs(const uint8_t* b, float* y) {
  static const int8_t levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  const float d = fp16_to_fp32(static_cast<uint16_t>(b[0] | b[1] << 8));
  const uint16_t scales_h = static_cast<uint16_t>(b[2] | b[3] << 8);
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((b[4 + ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * (ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * levels[qs[j] & 0xf];
      y[j + 16] = dl * levels[qs[j] >> 4];
    }
    y += 32;
    qs += 16;
  }
}

// q2_K in ggml's loop order: per half, four 2-bit planes of 32, two sub-blocks of 16 each.
void oracle_q2k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* q = b + 16;
  const float d = fp16_to_fp32(static_cast<uint16_t>(b[80] | b[81] << 8));
  const float dmin = fp16_to_fp32(static_cast<uint16_t>(b[82] | b[83] << 8));
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t s = sc[is++];
        const float dl = d * (s & 0xF), ml = dmin * (s >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * half + l] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

// q3_K in ggml's loop order, its 16 scales unpacked as four 32-bit words with masks.
void oracle_q3k(const uint8_t* b, float* y) {
  uint32_t aux[4];
  std::memcpy(aux, b + 96, 12);
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4);
  aux[3] = ((aux[1] >> 4) & 0x0f0f0f0f) | (((tmp >> 6) & 0x03030303) << 4);
  aux[0] = (aux[0] & 0x0f0f0f0f) | (((tmp >> 0) & 0x03030303) << 4);
  aux[1] = (aux[1] & 0x0f0f0f0f) | (((tmp >> 2) & 0x03030303) << 4);
  int8_t scales[16];
  std::memcpy(scales, aux, 16);
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const float d = fp16_to_fp32(static_cast<uint16_t>(b[108] | b[109] << 8));
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d * (scales[is++] - 32);
        for (int l = 16 * half; l < 16 * half + 16; ++l) {
          *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
      }
      m <<= 1;
    }
    q += 32;
  }
}

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * (i % 3 == 0 ? gauss(rng) : uni(rng));
  return v;
}

}  // namespace

TEST_CASE("type table matches ggml's block sizes") {
  struct Row { uint32_t id; uint32_t block; uint32_t bytes; };
  const Row rows[] = {{0, 1, 4},     {1, 1, 2},     {2, 32, 18},    {3, 32, 20},   {6, 32, 22},
                      {7, 32, 24},   {8, 32, 34},   {9, 32, 36},    {10, 256, 84}, {11, 256, 110},
                      {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292}, {16, 256, 66},
                      {17, 256, 74}, {18, 256, 98},  {19, 256, 50},  {20, 32, 18},  {21, 256, 110},
                      {22, 256, 82}, {23, 256, 136}, {24, 1, 1},     {25, 1, 2},    {26, 1, 4},
                      {27, 1, 8},    {28, 1, 8},     {29, 256, 56},  {30, 1, 2},    {34, 256, 54},
                      {35, 256, 66}, {39, 32, 17}};
  for (const Row& r : rows) {
    auto t = type_traits(r.id);
    REQUIRE_MESSAGE(t, "id " << r.id);
    CHECK(static_cast<uint32_t>(t->type) == r.id);
    CHECK(t->block_size == r.block);
    CHECK(t->block_bytes == r.bytes);
  }
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u}) {
    CHECK(is_removed_type(removed));
    CHECK_FALSE(type_traits(removed));
  }
  CHECK_FALSE(type_traits(40));
  CHECK_FALSE(type_traits(0xffffffffu));
  CHECK(type_name(12) == "q4_K");
  CHECK(type_name(1000) == "type#1000");
  CHECK(cpu_supported_types().size() == 16);
  for (TensorType t : cpu_supported_types()) CHECK(traits(t).cpu_supported);
}

TEST_CASE("tensor_bytes and checked arithmetic refuse overflow") {
  CHECK(tensor_bytes(TensorType::kF32, 4, 12) == 48u);
  CHECK(tensor_bytes(TensorType::kQ4_K, 512, 1024) == 4u * 144u);
  CHECK(tensor_bytes(TensorType::kQ4_0, 33, 33) == std::nullopt);  // row not a block multiple
  CHECK(tensor_bytes(TensorType::kF32, 1, 0) == 0u);
  CHECK(tensor_bytes(TensorType::kF32, uint64_t{1} << 62, uint64_t{1} << 62) == std::nullopt);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  CHECK(checked_add(max, 1) == std::nullopt);
  CHECK(checked_add(max - 1, 1) == max);
  CHECK(checked_mul(uint64_t{1} << 32, uint64_t{1} << 32) == std::nullopt);
  CHECK(checked_mul(0, max) == 0u);
  CHECK(checked_align_up(max - 3, 32) == std::nullopt);  // the GGML_PAD wrap
  CHECK(checked_align_up(33, 32) == 64u);
  CHECK(checked_align_up(64, 32) == 64u);
  CHECK(checked_align_up(5, 0) == std::nullopt);
  CHECK(checked_align_up(5, 12) == std::nullopt);
}

TEST_CASE("fp16 and bf16 conversions") {
  CHECK(fp16_to_fp32(0x3c00) == 1.0f);
  CHECK(fp16_to_fp32(0xc000) == -2.0f);
  CHECK(fp16_to_fp32(0x3555) == 0.333251953125f);
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(fp16_to_fp32(0x7bff) == 65504.0f);
  CHECK(std::isinf(fp16_to_fp32(0x7c00)));
  CHECK(std::isnan(fp16_to_fp32(0x7e00)));
  CHECK(std::signbit(fp16_to_fp32(0x8000)));
  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);  // rounds to inf
  CHECK(fp32_to_fp16(1e-8f) == 0x0000);
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 ulp: ties to even
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
  CHECK(fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);  // tie -> even (up)
  CHECK(std::isnan(fp16_to_fp32(fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()))));
  // Every finite half survives a round trip exactly.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (fp32_to_fp16(f) != h) {
      FAIL("half " << h << " does not round-trip");
    }
  }
  CHECK(bf16_to_fp32(0x3f80) == 1.0f);
  CHECK(bf16_to_fp32(0xc0a0) == -5.0f);
  CHECK(fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(fp32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie -> even
  CHECK(fp32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie -> even (up)
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("known bytes dequantize to known values: f32, f16, bf16") {
  const std::vector<uint8_t> f32{0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x20, 0xc1};
  CHECK(dequantize(TensorType::kF32, f32) == std::vector<float>{1.5f, -10.0f});
  const std::vector<uint8_t> f16{0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b};
  CHECK(dequantize(TensorType::kF16, f16) == std::vector<float>{1.0f, -2.0f, 65504.0f});
  const std::vector<uint8_t> bf16{0x80, 0x3f, 0xa0, 0xc0};
  CHECK(dequantize(TensorType::kBF16, bf16) == std::vector<float>{1.0f, -5.0f});
}

TEST_CASE("known bytes dequantize to known values: legacy 32-element quants") {
  SUBCASE("q8_0") {
    std::vector<uint8_t> b(34);
    put16(b, 0, 0x3800);  // d = 0.5
    for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 16));
    const auto y = dequantize(TensorType::kQ8_0, b);
    for (int i = 0; i < 32; ++i) CHECK(y[i] == 0.5f * (i - 16));
  }
  // qs[j] = j | (15 - j) << 4: element j -> j, element j + 16 -> 15 - j.
  SUBCASE("q4_0") {
    std::vector<uint8_t> b(18);
    put16(b, 0, 0x4000);  // d = 2
    for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const auto y = dequantize(TensorType::kQ4_0, b);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == 2.0f * (j - 8));
      CHECK(y[j + 16] == 2.0f * (15 - j - 8));
    }
  }
  SUBCASE("q4_1") {
    std::vector<uint8_t> b(20);
    put16(b, 0, 0x3800);  // d = 0.5
    put16(b, 2, 0xbc00);  // m = -1
    for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const auto y = dequantize(TensorType::kQ4_1, b);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == 0.5f * j - 1.0f);
      CHECK(y[j + 16] == 0.5f * (15 - j) - 1.0f);
    }
  }
  // qh = 0xAAAA5555: fifth bit set for even elements below 16 and odd ones from 16.
  SUBCASE("q5_0") {
    std::vector<uint8_t> b(22);
    put16(b, 0, 0x3c00);  // d = 1
    const uint8_t qh[4] = {0x55, 0x55, 0xaa, 0xaa};
    std::memcpy(&b[2], qh, 4);
    for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const auto y = dequantize(TensorType::kQ5_0, b);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == static_cast<float>(j + (j % 2 == 0 ? 16 : 0) - 16));
      CHECK(y[j + 16] == static_cast<float>(15 - j + (j % 2 == 1 ? 16 : 0) - 16));
    }
  }
  SUBCASE("q5_1") {
    std::vector<uint8_t> b(24);
    put16(b, 0, 0x3c00);  // d = 1
    put16(b, 2, 0x3800);  // m = 0.5
    const uint8_t qh[4] = {0x55, 0x55, 0xaa, 0xaa};
    std::memcpy(&b[4], qh, 4);
    for (int j = 0; j < 16; ++j) b[8 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const auto y = dequantize(TensorType::kQ5_1, b);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[j] == static_cast<float>(j + (j % 2 == 0 ? 16 : 0)) + 0.5f);
      CHECK(y[j + 16] == static_cast<float>(15 - j + (j % 2 == 1 ? 16 : 0)) + 0.5f);
    }
  }
}

TEST_CASE("known bytes dequantize to known values: K-quants") {
  // scales: s[0] = 0x41 -> sc0 = 1 and sc4's top bits 01; s[8] = 0x23 -> sc4 = 16|3 = 19,
  // m4 low nibble 2; s[4] = 0x85 -> m0 = 5 and m4's top bits 10 -> m4 = 32|2 = 34;
  // s[1] = 2 -> sc1 = 2; s[5] = 3 -> m1 = 3.
  auto k_scales = [](std::vector<uint8_t>& b) {
    put16(b, 0, 0x3c00);  // d = 1
    put16(b, 2, 0x3800);  // dmin = 0.5
    b[4 + 0] = 0x41;
    b[4 + 1] = 2;
    b[4 + 4] = 0x85;
    b[4 + 5] = 3;
    b[4 + 8] = 0x23;
  };
  SUBCASE("q4_K") {
    std::vector<uint8_t> b(144);
    k_scales(b);
    b[16 + 0] = 0x7a;   // element 0 (sub 0) = 10, element 32 (sub 1) = 7
    b[16 + 64] = 0x0f;  // element 128 (sub 4) = 15
    const auto y = dequantize(TensorType::kQ4_K, b);
    CHECK(y[0] == 1 * 1 * 10 - 0.5f * 5);    // 7.5
    CHECK(y[1] == -0.5f * 5);                // q = 0
    CHECK(y[32] == 1 * 2 * 7 - 0.5f * 3);    // 12.5
    CHECK(y[128] == 19 * 15 - 0.5f * 34);    // 268
    CHECK(y[160] == -0.0f);                  // sub 5: sc 0, m 0
  }
  SUBCASE("q5_K") {
    std::vector<uint8_t> b(176);
    k_scales(b);
    b[16 + 0] = 0x11;   // qh[0]: bit 0 -> element 0 gets +16, bit 4 -> element 128 gets +16
    b[48 + 0] = 0x7a;
    b[48 + 64] = 0x0f;
    const auto y = dequantize(TensorType::kQ5_K, b);
    CHECK(y[0] == 26 - 2.5f);
    CHECK(y[32] == 12.5f);
    CHECK(y[128] == 19 * 31 - 17.0f);
  }
  SUBCASE("q6_K") {
    std::vector<uint8_t> b(210);
    put16(b, 208, 0x3400);  // d = 0.25
    b[192 + 0] = 2;
    b[192 + 2] = 0xfd;  // -3
    b[192 + 4] = 1;
    b[192 + 15] = 5;
    b[0] = 0x5f;        // element 0 low = 15, element 64 low = 5
    b[128 + 0] = 0x09;  // qh[0]: element 0 high 01, element 32 high 10, element 64 high 00
    b[32] = 0x01;       // element 32 low = 1
    b[127] = 0xa0;      // element 255 low = 10 (high nibble of ql[127])
    b[128 + 63] = 0xc0; // element 255 high = 3
    const auto y = dequantize(TensorType::kQ6_K, b);
    CHECK(y[0] == 0.25f * 2 * (31 - 32));
    CHECK(y[32] == 0.25f * -3 * (33 - 32));
    CHECK(y[64] == 0.25f * 1 * (5 - 32));
    CHECK(y[255] == 0.25f * 5 * (58 - 32));
    CHECK(y[1] == 0.25f * 2 * -32);
  }
  SUBCASE("iq4_nl") {
    std::vector<uint8_t> b(18);
    put16(b, 0, 0x3800);  // d = 0.5
    b[2 + 0] = 0xF0;      // element 0: code 0 (-127), element 16: code 15 (113)
    b[2 + 15] = 0x78;     // element 15: code 8 (1), element 31: code 7 (-10)
    const auto y = dequantize(TensorType::kIQ4_NL, b);
    CHECK(y[0] == 0.5f * -127);
    CHECK(y[16] == 0.5f * 113);
    CHECK(y[15] == 0.5f * 1);
    CHECK(y[31] == 0.5f * -10);
    CHECK(y[1] == 0.5f * -127);  // code 0
  }
  SUBCASE("mxfp4") {
    std::vector<uint8_t> b(17);
    b[0] = 127;        // E8M0 "half" scale: 2^(127 - 128) = 0.5
    b[1 + 0] = 0xF7;   // element 0: code 7 (12), element 16: code 15 (-12)
    b[1 + 15] = 0x18;  // element 15: code 8 (-0), element 31: code 1 (1)
    b[1 + 3] = 0x25;   // element 3: code 5 (6), element 19: code 2 (2)
    auto y = dequantize(TensorType::kMXFP4, b);
    CHECK(y[0] == 0.5f * 12);
    CHECK(y[16] == 0.5f * -12);
    CHECK(y[15] == 0.0f);
    CHECK(y[31] == 0.5f * 1);
    CHECK(y[3] == 0.5f * 6);
    CHECK(y[19] == 0.5f * 2);
    CHECK(y[1] == 0.0f);  // code 0
    b[0] = 130;  // 2^2
    y = dequantize(TensorType::kMXFP4, b);
    CHECK(y[0] == 4.0f * 12);
    b[0] = 0;  // 2^-128, a denormal
    y = dequantize(TensorType::kMXFP4, b);
    CHECK(y[0] == std::ldexp(12.0f, -128));
  }
  SUBCASE("iq4_xs") {
    std::vector<uint8_t> b(136);
    put16(b, 0, 0x3400);  // d = 0.25
    // Sub-block scales ls - 32: 0 -> 33 (1), 1 -> 0 (-32), 7 -> 63 (31), the rest 32 (0) but 5.
    b[4 + 0] = 0x01;      // ls0 low 1, ls1 low 0
    b[4 + 3] = 0xF0;      // ls6 low 0, ls7 low 15
    b[4 + 2] = 0x00;      // ls4, ls5 low 0
    put16(b, 2, static_cast<uint16_t>((2 << 0) | (0 << 2) | (2 << 4) | (2 << 6) | (2 << 8) | (1 << 10) |
                                      (2 << 12) | (3 << 14)));  // ls5 = 16 (-16)
    b[8 + 0] = 0x9F;      // sub-block 0: element 0 code 15 (113), element 16 code 9 (13)
    b[8 + 16] = 0x00;     // sub-block 1: element 32 code 0 (-127)
    b[8 + 112 + 15] = 0x40;  // sub-block 7: element 255 code 4 (-49), element 239 code 0
    b[8 + 80] = 0x08;     // sub-block 5: element 160 code 8 (1)
    const auto y = dequantize(TensorType::kIQ4_XS, b);
    CHECK(y[0] == 0.25f * 1 * 113);
    CHECK(y[16] == 0.25f * 1 * 13);
    CHECK(y[32] == 0.25f * -32 * -127);
    CHECK(y[255] == 0.25f * 31 * -49);
    CHECK(y[239] == 0.25f * 31 * -127);
    CHECK(y[160] == 0.25f * -16 * 1);
    CHECK(y[64] == 0.0f);  // sub-block 2: ls 32, scale 0
  }
  SUBCASE("q2_K") {
    std::vector<uint8_t> b(84);
    put16(b, 80, 0x3c00);  // d = 1
    put16(b, 82, 0x3800);  // dmin = 0.5
    b[0] = 0x23;           // sub-block 0: sc 3, m 2
    b[2] = 0x01;           // sub-block 2: sc 1, m 0
    b[8] = 0x15;           // sub-block 8: sc 5, m 1
    b[16] = 0x27;          // qs[0]: element 0 = 3, element 32 = 1, element 64 = 2, element 96 = 0
    b[48] = 0x02;          // qs[32]: element 128 = 2
    const auto y = dequantize(TensorType::kQ2_K, b);
    CHECK(y[0] == 1 * 3 * 3 - 0.5f * 2);
    CHECK(y[1] == -1.0f);  // q = 0
    CHECK(y[32] == 1.0f);
    CHECK(y[64] == 0.0f);  // sub-block 4: sc 0, m 0
    CHECK(y[128] == 5 * 2 - 0.5f);
  }
  SUBCASE("q3_K") {
    std::vector<uint8_t> b(110);
    put16(b, 108, 0x3800);  // d = 0.5
    // Scales (stored + 32): 0 -> 34 (2), 8 -> 29 (-3), 15 -> 63 (31), the rest 0 (-32).
    b[96 + 0] = 0xD2;       // low nibbles of scales 0 and 8
    b[96 + 7] = 0xF0;       // low nibble of scale 15
    b[96 + 8] = 0x12;       // top bits of scale 0 (bits 0-1) and scale 8 (bits 4-5)
    b[96 + 11] = 0xC0;      // top bits of scale 15 (bits 6-7)
    b[32] = 0x03;           // element 0: low bits 3
    b[0] = 0x01;            // element 0: bit 2 set (hmask bit 0)
    b[64] = 0x01;           // element 128: low bits 1, hmask bit 4 clear
    b[95] = 0x80;           // element 255: low bits 2 (bits 6-7 of qs[63])
    b[31] = 0x80;           // element 255: bit 2 set (hmask[31] bit 7)
    const auto y = dequantize(TensorType::kQ3_K, b);
    CHECK(y[0] == 0.5f * 2 * (7 - 4));
    CHECK(y[1] == 0.5f * 2 * (0 - 4));
    CHECK(y[16] == 0.5f * -32 * (0 - 4));
    CHECK(y[128] == 0.5f * -3 * (1 - 4));
    CHECK(y[255] == 0.5f * 31 * (6 - 4));
  }
}

TEST_CASE("K-quant dequantization agrees with ggml-style loop oracles on random blocks") {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 200; ++iter) {
    for (TensorType type : {TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                            TensorType::kQ6_K, TensorType::kIQ4_XS}) {
      std::vector<uint8_t> b(traits(type).block_bytes);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
      // Keep the f16 scales finite (exponent field below 31).
      auto tame = [&](size_t at) { b[at + 1] = static_cast<uint8_t>(b[at + 1] & 0x3b); };
      std::vector<float> expect(256);
      if (type == TensorType::kQ6_K) {
        tame(208);
        oracle_q6k(b.data(), expect.data());
      } else if (type == TensorType::kQ2_K) {
        tame(80);
        tame(82);
        oracle_q2k(b.data(), expect.data());
      } else if (type == TensorType::kQ3_K) {
        tame(108);
        oracle_q3k(b.data(), expect.data());
      } else if (type == TensorType::kIQ4_XS) {
        tame(0);
        oracle_iq4xs(b.data(), expect.data());
      } else {
        tame(0);
        tame(2);
        oracle_q4k_q5k(b.data(), expect.data(), type == TensorType::kQ5_K);
      }
      const auto y = dequantize(type, b);
      for (int i = 0; i < 256; ++i) {
        if (y[i] != expect[i]) {
          FAIL(type_name(type) << " element " << i << ": " << y[i] << " != " << expect[i]);
        }
      }
    }
  }
}

TEST_CASE("quantize round trip stays within per-type error bounds") {
  struct Case { TensorType type; double max_err_over_amax; double rmse_over_rms; };
  // Bounds follow from each quantizer: step / 2 of the block's range (see quant.cpp), with
  // slack for f16 rounding of the scales.
  const Case cases[] = {
      {TensorType::kF32, 0.0, 0.0},          {TensorType::kF16, 1e-3, 1e-3},
      {TensorType::kBF16, 4e-3, 4e-3},       {TensorType::kQ8_0, 0.0041, 0.01},
      {TensorType::kQ4_0, 0.126, 0.12},      {TensorType::kQ4_1, 0.068, 0.10},
      {TensorType::kQ5_0, 0.063, 0.06},      {TensorType::kQ5_1, 0.034, 0.05},
      {TensorType::kQ4_K, 0.07, 0.10},       {TensorType::kQ5_K, 0.035, 0.05},
      {TensorType::kQ6_K, 0.017, 0.025},
      {TensorType::kQ2_K, 0.40, 0.40},       {TensorType::kQ3_K, 0.20, 0.23},
      {TensorType::kIQ4_NL, 0.11, 0.09},     {TensorType::kIQ4_XS, 0.12, 0.09},
      // mxfp4: the OCP rule's power-of-two scale puts the top level (12) at 1.5 x 2^floor(log2
      // amax): values past it clip, by up to a quarter of amax.
      {TensorType::kMXFP4, 0.25, 0.16},
  };
  for (const Case& c : cases) {
    CAPTURE(type_name(c.type));
    for (float scale : {1.0f, 1e-3f, 50.0f}) {
      CAPTURE(scale);
      const auto x = random_values(256 * 8, 42, scale);
      const auto q = quantize(c.type, x);
      REQUIRE(q.size() == *tensor_bytes(c.type, x.size(), x.size()));
      const auto y = dequantize(c.type, q);
      REQUIRE(y.size() == x.size());
      double err2 = 0, sig2 = 0;
      const uint32_t bs = std::max<uint32_t>(traits(c.type).block_size, 32);
      for (size_t b0 = 0; b0 < x.size(); b0 += bs) {
        float amax = 0;
        for (size_t i = b0; i < b0 + bs; ++i) amax = std::max(amax, std::fabs(x[i]));
        for (size_t i = b0; i < b0 + bs; ++i) {
          const double e = std::fabs(double{y[i]} - x[i]);
          const double bound = c.type == TensorType::kF16 || c.type == TensorType::kBF16
                                   ? c.max_err_over_amax * std::fabs(x[i]) + 3e-8  // f16 subnormal spacing 2^-24
                                   : c.max_err_over_amax * amax;
          if (e > bound) FAIL("element " << i << ": " << x[i] << " -> " << y[i] << " (amax " << amax << ")");
          err2 += e * e;
          sig2 += double{x[i]} * x[i];
        }
      }
      CHECK(std::sqrt(err2 / sig2) <= c.rmse_over_rms + 1e-12);
    }
  }
}

TEST_CASE("quantizers handle constant, zero and one-sided blocks") {
  for (TensorType type : cpu_supported_types()) {
    CAPTURE(type_name(type));
    for (float v : {0.0f, 1.0f, -3.0f}) {
      const std::vector<float> x(256, v);
      const auto y = dequantize(type, quantize(type, x));
      for (float f : y) CHECK(std::fabs(f - v) <= 0.02f * std::fabs(v) + 1e-6f);
    }
    std::vector<float> pos(256);
    for (int i = 0; i < 256; ++i) pos[i] = 1.0f + i / 256.0f;
    const auto y = dequantize(type, quantize(type, pos));
    // Half a step: the 2- and 3-bit types have 3 steps over [0, 2] (codes 0..3 of q2_K, 0..3
    // of q3_K's -4..3), the others at least 15.
    // mxfp4: its top level sits at 1.5 for a maximum just under 2 (the clipping above).
    const bool low_bits = type == TensorType::kQ2_K || type == TensorType::kQ3_K;
    const float tolerance = type == TensorType::kMXFP4 ? 0.5f : low_bits ? 0.34f : 0.15f;
    for (int i = 0; i < 256; ++i) CHECK(std::fabs(y[i] - pos[i]) <= tolerance);
  }
}

TEST_CASE("dequantize and quantize reject unsupported types and size mismatches") {
  const std::vector<uint8_t> iq3(110);
  CHECK_THROWS_AS(dequantize(TensorType::kIQ3_S, iq3), vkllm::Unsupported);
  const std::vector<float> x(100);
  CHECK_THROWS_AS(quantize(TensorType::kQ8_0, x), vkllm::InvalidRequest);
  std::vector<float> out(31);
  const std::vector<uint8_t> block(34);
  CHECK_THROWS_AS(dequantize(TensorType::kQ8_0, block, out), vkllm::InvalidRequest);
  const std::vector<uint8_t> partial(35);
  CHECK_THROWS_AS(dequantize(TensorType::kQ8_0, partial), vkllm::InvalidRequest);
}
