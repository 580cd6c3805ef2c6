// Decoding of GGUF/ggml weight blocks in registers, one weight type per variant (-DWTYPE_<T>).
// The truth is the CPU reference engine/gguf/quant.cpp; block layouts are listed in
// engine/gguf/quant.hpp. Knows no op: the including shader declares the weights as
//   layout(binding = B) readonly buffer Wq { uint wq[]; };
// raw little-endian 32-bit words (rows are not 4-byte aligned in general: a q4_0 block is 18
// bytes), so every variant reads bytes and halves with bit operations and needs neither 8- nor
// 16-bit storage. Every field offset is even (all block sizes are even but mxfp4's 17), so a
// 32-bit read spans at most two words; mxfp4 reads its codes at any offset (dq_u32_any).
//
// Contract of the weight binding: the bytes of the rows, then at least 4 bytes of padding
// (ops::DeviceWeight pads every chunk), because dq_u32 reads the word after the one it needs.
// F32 reads only its own words and needs no padding.
//
// What a variant defines:
//   DQ_BLOCK_SIZE, DQ_BLOCK_BYTES  elements and bytes of one block
//   DQ_GROUPS                      vec4 groups one decode unit yields (DQ_UNIT = 4 * DQ_GROUPS
//                                  elements); a row of ncols elements holds ncols / DQ_UNIT
//                                  whole units
//   DQ_FLOAT                       1 for f32/f16/bf16: ncols is any number, the ncols % DQ_UNIT
//                                  elements past the last unit are read one by one (dq_one)
//   dq_unit(rb, u, v, col)         unit u of the row starting at byte rb: v[g] holds the four
//                                  elements at columns col[g] .. col[g] + 3

#if defined(WTYPE_F32)
#define DQ_BLOCK_SIZE 1
#define DQ_BLOCK_BYTES 4
#define DQ_GROUPS 1
#define DQ_FLOAT 1
#elif defined(WTYPE_F16) || defined(WTYPE_BF16)
#define DQ_BLOCK_SIZE 1
#define DQ_BLOCK_BYTES 2
#define DQ_GROUPS 2
#define DQ_FLOAT 1
#elif defined(WTYPE_Q8_0)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 34
#elif defined(WTYPE_Q4_0)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 18
#define DQ_QS 2u  // where a block's quant nibbles start (and DQ_QH: its fifth bits)
#elif defined(WTYPE_Q4_1)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 20
#define DQ_QS 4u
#elif defined(WTYPE_Q5_0)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 22
#define DQ_QS 6u
#define DQ_QH 2u
#elif defined(WTYPE_Q5_1)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 24
#define DQ_QS 8u
#define DQ_QH 4u
#elif defined(WTYPE_Q4_K)
#define DQ_BLOCK_SIZE 256
#define DQ_BLOCK_BYTES 144
#elif defined(WTYPE_Q5_K)
#define DQ_BLOCK_SIZE 256
#define DQ_BLOCK_BYTES 176
#elif defined(WTYPE_Q6_K)
#define DQ_BLOCK_SIZE 256
#define DQ_BLOCK_BYTES 210
#elif defined(WTYPE_Q2_K)
#define DQ_BLOCK_SIZE 256
#define DQ_BLOCK_BYTES 84
#elif defined(WTYPE_Q3_K)
#define DQ_BLOCK_SIZE 256
#define DQ_BLOCK_BYTES 110
#elif defined(WTYPE_IQ4_NL)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 18
#elif defined(WTYPE_IQ4_XS)
#define DQ_BLOCK_SIZE 256
#define DQ_BLOCK_BYTES 136
#elif defined(WTYPE_MXFP4)
#define DQ_BLOCK_SIZE 32
#define DQ_BLOCK_BYTES 17
#else
#error "dequant.glsl: define one WTYPE_<type>"
#endif

#ifndef DQ_GROUPS
#define DQ_GROUPS 4  // quantized types: 16 elements a unit
#endif
#ifndef DQ_FLOAT
#define DQ_FLOAT 0
#endif
#define DQ_UNIT (4 * DQ_GROUPS)

// ---- raw reads ----

uint dq_u8(uint off) { return (wq[off >> 2] >> ((off & 3u) << 3)) & 0xFFu; }
int dq_i8(uint off) { return bitfieldExtract(int(wq[off >> 2]), int((off & 3u) << 3), 8); }
// off even: a half never straddles two words.
uint dq_u16(uint off) { return (wq[off >> 2] >> ((off & 2u) << 3)) & 0xFFFFu; }
float dq_f16(uint off) { return unpackHalf2x16(dq_u16(off)).x; }
// off even; reads the next word too (the padding contract above). Branch-free: invocations of
// neighbouring blocks see both alignments.
uint dq_u32(uint off) {
  const uint i = off >> 2;
  const uint sh = (off & 2u) << 3;  // 0 or 16
  return (wq[i] >> sh) | ((wq[i + 1] << 16) << (16u - sh));
}
// Any offset (mxfp4's 17-byte blocks); reads the next word too. At sh = 0 the second term
// shifts by 32 in two steps: zero, with no shift of 32 (undefined in GLSL).
uint dq_u32_any(uint off) {
  const uint i = off >> 2;
  const uint sh = (off & 3u) << 3;
  return (wq[i] >> sh) | ((wq[i + 1] << 1) << (31u - sh));
}

// Four bytes of a word as floats (byte 0 -> .x).
vec4 dq_bytes(uint q) {
  return vec4(uvec4(q & 0xFFu, (q >> 8) & 0xFFu, (q >> 16) & 0xFFu, q >> 24));
}
// Four signed bytes of a word as floats.
vec4 dq_sbytes(uint q) {
  const int s = int(q);
  return vec4(ivec4(bitfieldExtract(s, 0, 8), bitfieldExtract(s, 8, 8), bitfieldExtract(s, 16, 8),
                    bitfieldExtract(s, 24, 8)));
}
// Bits 0..3 of b moved to bit 0 of bytes 0..3.
uint dq_spread4(uint b) {
  return (b & 1u) | ((b & 2u) << 7) | ((b & 4u) << 14) | ((b & 8u) << 21);
}

// ---- f32, f16, bf16: DQ_UNIT consecutive elements ----

#if defined(WTYPE_F32)
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint i = (rb >> 2) + 4u * u;
  v[0] = uintBitsToFloat(uvec4(wq[i], wq[i + 1], wq[i + 2], wq[i + 3]));
  col[0] = 4u * u;
}
float dq_one(uint rb, uint c) { return uintBitsToFloat(wq[(rb >> 2) + c]); }
#endif

#if defined(WTYPE_F16) || defined(WTYPE_BF16)
vec2 dq_pair(uint w) {
#if defined(WTYPE_F16)
  return unpackHalf2x16(w);
#else
  return uintBitsToFloat(uvec2(w << 16, w & 0xFFFF0000u));
#endif
}
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint off = rb + 16u * u;
  v[0] = vec4(dq_pair(dq_u32(off)), dq_pair(dq_u32(off + 4u)));
  v[1] = vec4(dq_pair(dq_u32(off + 8u)), dq_pair(dq_u32(off + 12u)));
  col[0] = 8u * u;
  col[1] = 8u * u + 4u;
}
float dq_one(uint rb, uint c) { return dq_pair(dq_u16(rb + 2u * c)).x; }
#endif

// ---- legacy 32-element blocks: unit = half a block (h = u & 1) ----
// q8_0: elements 16h .. 16h + 15. q4/q5: the quant bytes 8h .. 8h + 7, i.e. elements
// 8h .. 8h + 7 (low nibbles) and 16 + 8h .. 16 + 8h + 7 (high nibbles).

#if defined(WTYPE_Q8_0)
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint b = u >> 1, h = u & 1u;
  const uint bo = rb + b * DQ_BLOCK_BYTES;
  const float d = dq_f16(bo);
  const uint qo = bo + 2u + 16u * h;
  [[unroll]] for (uint g = 0; g < 4; ++g) {
    v[g] = dq_sbytes(dq_u32(qo + 4u * g)) * d;
    col[g] = 32u * b + 16u * h + 4u * g;
  }
}
#endif

#if defined(WTYPE_Q4_0) || defined(WTYPE_Q4_1) || defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint b = u >> 1, h = u & 1u;
  const uint bo = rb + b * DQ_BLOCK_BYTES;
  const uint qs = bo + DQ_QS;
#if defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
  const uint qh = dq_u32(bo + DQ_QH);
#endif
  const uint q0 = dq_u32(qs + 8u * h), q1 = dq_u32(qs + 8u * h + 4u);
  // Codes of elements 8h+0..3, 8h+4..7, 16+8h+0..3, 16+8h+4..7, one per byte.
  uint c[4] = uint[4](q0 & 0x0F0F0F0Fu, q1 & 0x0F0F0F0Fu, (q0 >> 4) & 0x0F0F0F0Fu,
                      (q1 >> 4) & 0x0F0F0F0Fu);
#if defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
  // The fifth bit of element e is bit e of qh.
  [[unroll]] for (uint g = 0; g < 4; ++g) {
    const uint e0 = 16u * (g >> 1) + 8u * h + 4u * (g & 1u);
    c[g] |= dq_spread4((qh >> e0) & 0xFu) << 4;
  }
#endif
#if defined(WTYPE_Q4_0) || defined(WTYPE_Q5_0)
  const float d = dq_f16(bo);
#if defined(WTYPE_Q4_0)
  const float zero = 8.0;
#else
  const float zero = 16.0;
#endif
  [[unroll]] for (uint g = 0; g < 4; ++g) v[g] = (dq_bytes(c[g]) - zero) * d;
#else
  const vec2 dm = unpackHalf2x16(dq_u32(bo));  // d, m
  [[unroll]] for (uint g = 0; g < 4; ++g) v[g] = dq_bytes(c[g]) * dm.x + dm.y;
#endif
  [[unroll]] for (uint g = 0; g < 4; ++g) {
    col[g] = 32u * b + 16u * (g >> 1) + 8u * h + 4u * (g & 1u);
  }
}
#endif

// ---- q4_K, q5_K: 256-element super-blocks of 8 sub-blocks; unit s = u & 15 ----
// Unit (p = s >> 2, k = s & 3) decodes quant bytes qs[32p + 8k .. 32p + 8k + 7]: elements
// 64p + 8k + 0..7 (low nibbles, sub-block 2p) and 64p + 32 + 8k + 0..7 (high nibbles, sub-block
// 2p + 1); q5_K's fifth bits are bits 2p and 2p + 1 of qh[8k .. 8k + 7].

#if defined(WTYPE_Q4_K) || defined(WTYPE_Q5_K)
// 6-bit scale and min of sub-block j from the 12 scale bytes (words s0, s1, s2), as
// unpack_scale_min in quant.cpp.
uint dq_kbyte(uint s0, uint s1, uint s2, uint i) {
  const uint w = i < 4u ? s0 : (i < 8u ? s1 : s2);
  return (w >> ((i & 3u) << 3)) & 0xFFu;
}
vec2 dq_scale_min(uint s0, uint s1, uint s2, uint j) {
  if (j < 4u) {
    return vec2(dq_kbyte(s0, s1, s2, j) & 63u, dq_kbyte(s0, s1, s2, j + 4u) & 63u);
  }
  const uint hi = dq_kbyte(s0, s1, s2, j + 4u);
  return vec2((hi & 0xFu) | ((dq_kbyte(s0, s1, s2, j - 4u) >> 6) << 4),
              (hi >> 4) | ((dq_kbyte(s0, s1, s2, j) >> 6) << 4));
}

void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint b = u >> 4, s = u & 15u;
  const uint p = s >> 2, k = s & 3u;
  const uint bo = rb + b * DQ_BLOCK_BYTES;
  const vec2 dd = unpackHalf2x16(dq_u32(bo));  // d, dmin
  const uint s0 = dq_u32(bo + 4u), s1 = dq_u32(bo + 8u), s2 = dq_u32(bo + 12u);
  const vec2 sm0 = dq_scale_min(s0, s1, s2, 2u * p);
  const vec2 sm1 = dq_scale_min(s0, s1, s2, 2u * p + 1u);
#if defined(WTYPE_Q4_K)
  const uint qs = bo + 16u;
#else
  const uint qs = bo + 48u;
#endif
  const uint q0 = dq_u32(qs + 32u * p + 8u * k), q1 = dq_u32(qs + 32u * p + 8u * k + 4u);
  uint c[4] = uint[4](q0 & 0x0F0F0F0Fu, q1 & 0x0F0F0F0Fu, (q0 >> 4) & 0x0F0F0F0Fu,
                      (q1 >> 4) & 0x0F0F0F0Fu);
#if defined(WTYPE_Q5_K)
  const uint h0 = dq_u32(bo + 16u + 8u * k), h1 = dq_u32(bo + 20u + 8u * k);
  c[0] |= ((h0 >> (2u * p)) & 0x01010101u) << 4;
  c[1] |= ((h1 >> (2u * p)) & 0x01010101u) << 4;
  c[2] |= ((h0 >> (2u * p + 1u)) & 0x01010101u) << 4;
  c[3] |= ((h1 >> (2u * p + 1u)) & 0x01010101u) << 4;
#endif
  // x = d * sc * q - dmin * m, in the reference's order of operations.
  const float a0 = dd.x * sm0.x, m0 = dd.y * sm0.y;
  const float a1 = dd.x * sm1.x, m1 = dd.y * sm1.y;
  v[0] = a0 * dq_bytes(c[0]) - m0;
  v[1] = a0 * dq_bytes(c[1]) - m0;
  v[2] = a1 * dq_bytes(c[2]) - m1;
  v[3] = a1 * dq_bytes(c[3]) - m1;
  const uint c0 = 256u * b + 64u * p + 8u * k;
  col[0] = c0;
  col[1] = c0 + 4u;
  col[2] = c0 + 32u;
  col[3] = c0 + 36u;
}
#endif

// ---- q6_K: ql[128] | qh[64] | i8 scales[16] | f16 d; unit s = u & 15 ----
// Unit (n = s >> 3, k = s & 7) covers l = 4k .. 4k + 3 of half n: for g = 0..3 the elements
// 128n + 32g + l, whose low 4 bits are nibble (g >> 1) of ql[64n + 32(g & 1) + l] and high 2 bits
// bits 2g, 2g + 1 of qh[32n + l]; scale scales[8n + 2g + k / 4].

#if defined(WTYPE_Q6_K)
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint b = u >> 4, s = u & 15u;
  const uint n = s >> 3, k = s & 7u;
  const uint bo = rb + b * DQ_BLOCK_BYTES;
  const uint la = dq_u32(bo + 64u * n + 4u * k);        // g = 0 (low), g = 2 (high)
  const uint lb = dq_u32(bo + 64u * n + 32u + 4u * k);  // g = 1 (low), g = 3 (high)
  const uint qh = dq_u32(bo + 128u + 32u * n + 4u * k);
  const float d = dq_f16(bo + 208u);
  const uint c[4] = uint[4](
      (la & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4),
      (lb & 0x0F0F0F0Fu) | (((qh >> 2) & 0x03030303u) << 4),
      ((la >> 4) & 0x0F0F0F0Fu) | (((qh >> 4) & 0x03030303u) << 4),
      ((lb >> 4) & 0x0F0F0F0Fu) | (((qh >> 6) & 0x03030303u) << 4));
  const uint so = bo + 192u + 8u * n + (k >> 2);
  [[unroll]] for (uint g = 0; g < 4; ++g) {
    const float a = d * float(dq_i8(so + 2u * g));
    v[g] = a * (dq_bytes(c[g]) - 32.0);
    col[g] = 256u * b + 128u * n + 32u * g + 4u * k;
  }
}
#endif

// ---- q2_K: scales[16] | qs[64] | f16 d, f16 dmin; q3_K: hmask[32] | qs[64] | scales[12] | f16 d
// Element e = 128n + 32g + l (n half, g 0..3, l 0..31): its 2 low bits are bits 2g, 2g + 1 of
// qs[32n + l], its sub-block of 16 is 8n + 2g + l / 16, and q3_K's bit 2 is bit 4n + g of
// hmask[l]. dq_k23(bo, n, g, l) decodes elements 128n + 32g + l .. + 3 (l % 4 == 0).
#if defined(WTYPE_Q2_K) || defined(WTYPE_Q3_K)
#if defined(WTYPE_Q3_K)
// Scale j (0..15) from the 12 packed bytes at so, less 32 (engine/gguf/quant.cpp q3k_scale).
float dq_q3k_scale(uint so, uint j) {
  const uint low = j < 8u ? (dq_u8(so + j) & 0xFu) : (dq_u8(so + j - 8u) >> 4);
  const uint high = (dq_u8(so + 8u + (j & 3u)) >> (2u * (j >> 2))) & 3u;
  return float(int(low | (high << 4)) - 32);
}
#endif
vec4 dq_k23(uint bo, uint n, uint g, uint l) {
  const uint j = 8u * n + 2u * g + (l >> 4);  // sub-block of 16
#if defined(WTYPE_Q2_K)
  const uint q = (dq_u32(bo + 16u + 32u * n + l) >> (2u * g)) & 0x03030303u;
  const vec2 dd = unpackHalf2x16(dq_u32(bo + 80u));  // d, dmin
  const uint sm = dq_u8(bo + j);
  // x = d * sc * q - dmin * m, in the reference's order of operations.
  const float a = dd.x * float(sm & 0xFu), m = dd.y * float(sm >> 4);
  return a * dq_bytes(q) - m;
#else
  uint q = (dq_u32(bo + 32u + 32u * n + l) >> (2u * g)) & 0x03030303u;
  q |= ((dq_u32(bo + l) >> (4u * n + g)) & 0x01010101u) << 2;
  const float a = dq_f16(bo + 108u) * dq_q3k_scale(bo + 96u, j);
  return a * (dq_bytes(q) - 4.0);
#endif
}
// Unit s = u & 15 of block u >> 4: (n = s >> 3, k = s & 7), the four groups g at l = 4k.
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint b = u >> 4, s = u & 15u;
  const uint n = s >> 3, k = s & 7u;
  const uint bo = rb + b * DQ_BLOCK_BYTES;
  [[unroll]] for (uint g = 0; g < 4; ++g) {
    v[g] = dq_k23(bo, n, g, 4u * k);
    col[g] = 256u * b + 128u * n + 32u * g + 4u * k;
  }
}
#endif

// ---- 32-element blocks as integer codes (the integer-dot GEMV, matmul.comp INTDOT) ----
// dq_block_codes(rb, b, c, sm): block b of 32 elements (columns 32b .. 32b + 31) of the row at
// byte rb as 8 words of codes, word j = elements 4j .. 4j + 3 one signed byte each, and the
// (scale, offset) of its elements 0..15 (sm.xy) and 16..31 (sm.zw): element value = scale * code
// + offset. Legacy blocks and q4_K/q5_K sub-blocks have one pair for all 32 (sm.xy == sm.zw):
// q8_0 (d, 0), q4_0 (d, -8d), q5_0 (d, -16d), q4_1 / q5_1 (d, m), q4_K / q5_K (d sc, -dmin m),
// codes 0..31 (positive as signed bytes too). DQ_INTDOT_HALVES: the halves are sub-blocks of 16
// with scales of their own: q6_K and q3_K as signed codes (q - 32, q - 4) with no offset, q2_K
// (d sc, -dmin m) with codes 0..3 (DQ_INTDOT_OFFSET).

// Sign-extends the 6-bit (q6_K) or 3-bit (q3_K) codes q - 32 / q - 4 of four unsigned bytes q.
uint dq_signed6(uint q) {
  const uint x = q ^ 0x20202020u;  // q - 32 as 6-bit two's complement
  return x | (((x >> 5) & 0x01010101u) * 0xC0u);
}
uint dq_signed3(uint q) {
  const uint x = q ^ 0x04040404u;  // q - 4 as 3-bit two's complement
  return x | (((x >> 2) & 0x01010101u) * 0xF8u);
}

#if defined(WTYPE_Q8_0) || defined(WTYPE_Q4_0) || defined(WTYPE_Q4_1) || defined(WTYPE_Q5_0) || \
    defined(WTYPE_Q5_1)
#define DQ_INTDOT 1
void dq_block_codes(uint rb, uint b, out uint c[8], out vec4 sm) {
  const uint bo = rb + b * DQ_BLOCK_BYTES;
  vec2 dm;
#if defined(WTYPE_Q8_0)
  [[unroll]] for (uint j = 0; j < 8u; ++j) c[j] = dq_u32(bo + 2u + 4u * j);
  dm = vec2(dq_f16(bo), 0.0);
#else
  const uint qs = bo + DQ_QS;
  [[unroll]] for (uint j = 0; j < 4u; ++j) {
    const uint q = dq_u32(qs + 4u * j);
    c[j] = q & 0x0F0F0F0Fu;             // elements 4j ..: low nibbles of bytes 4j ..
    c[j + 4u] = (q >> 4) & 0x0F0F0F0Fu;  // elements 16 + 4j ..: their high nibbles
  }
#if defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
  const uint qh = dq_u32(bo + DQ_QH);  // bit e: element e's fifth bit
  [[unroll]] for (uint j = 0; j < 8u; ++j) c[j] |= dq_spread4((qh >> (4u * j)) & 0xFu) << 4;
#endif
#if defined(WTYPE_Q4_0)
  const float d = dq_f16(bo);
  dm = vec2(d, -8.0 * d);
#elif defined(WTYPE_Q5_0)
  const float d = dq_f16(bo);
  dm = vec2(d, -16.0 * d);
#else
  dm = unpackHalf2x16(dq_u32(bo));
#endif
#endif
  sm = dm.xyxy;
}
#elif defined(WTYPE_Q4_K) || defined(WTYPE_Q5_K)
#define DQ_INTDOT 1
// Sub-block j = b & 7 of super-block b >> 3: nibble j & 1 of qs[32 (j >> 1) ..], q5_K's fifth
// bit j of qh[0 .. 31] (the layout of dq_unit above).
void dq_block_codes(uint rb, uint b, out uint c[8], out vec4 sm) {
  const uint bo = rb + (b >> 3) * DQ_BLOCK_BYTES;
  const uint j = b & 7u;
  const vec2 dd = unpackHalf2x16(dq_u32(bo));  // d, dmin
  const vec2 s = dq_scale_min(dq_u32(bo + 4u), dq_u32(bo + 8u), dq_u32(bo + 12u), j);
#if defined(WTYPE_Q4_K)
  const uint qs = bo + 16u + 32u * (j >> 1);
#else
  const uint qs = bo + 48u + 32u * (j >> 1);
#endif
  [[unroll]] for (uint w = 0; w < 8u; ++w) {
    c[w] = (dq_u32(qs + 4u * w) >> (4u * (j & 1u))) & 0x0F0F0F0Fu;
#if defined(WTYPE_Q5_K)
    c[w] |= ((dq_u32(bo + 16u + 4u * w) >> j) & 0x01010101u) << 4;
#endif
  }
  sm = vec2(dd.x * s.x, -(dd.y * s.y)).xyxy;
}
#elif defined(WTYPE_Q6_K) || defined(WTYPE_Q3_K) || defined(WTYPE_Q2_K)
#define DQ_INTDOT 1
#define DQ_INTDOT_HALVES 1
#if defined(WTYPE_Q2_K)
#define DQ_INTDOT_OFFSET 1
#endif
// Block j = b & 7 of super-block b >> 3 is (n = j >> 2, g = j & 3) of the layouts above:
// elements 128n + 32g + l, l = 0..31, sub-blocks of 16 8n + 2g and 8n + 2g + 1.
void dq_block_codes(uint rb, uint b, out uint c[8], out vec4 sm) {
  const uint bo = rb + (b >> 3) * DQ_BLOCK_BYTES;
  const uint j = b & 7u, n = j >> 2, g = j & 3u;
  const uint sub = 8u * n + 2u * g;
  [[unroll]] for (uint w = 0; w < 8u; ++w) {
#if defined(WTYPE_Q6_K)
    const uint la = dq_u32(bo + 64u * n + 32u * (g & 1u) + 4u * w);
    const uint qh = dq_u32(bo + 128u + 32u * n + 4u * w);
    c[w] = dq_signed6(((la >> (4u * (g >> 1))) & 0x0F0F0F0Fu) | (((qh >> (2u * g)) & 0x03030303u) << 4));
#elif defined(WTYPE_Q3_K)
    uint q = (dq_u32(bo + 32u + 32u * n + 4u * w) >> (2u * g)) & 0x03030303u;
    q |= ((dq_u32(bo + 4u * w) >> (4u * n + g)) & 0x01010101u) << 2;
    c[w] = dq_signed3(q);
#else
    c[w] = (dq_u32(bo + 16u + 32u * n + 4u * w) >> (2u * g)) & 0x03030303u;
#endif
  }
#if defined(WTYPE_Q6_K)
  const float d = dq_f16(bo + 208u);
  sm = vec4(d * float(dq_i8(bo + 192u + sub)), 0.0, d * float(dq_i8(bo + 193u + sub)), 0.0);
#elif defined(WTYPE_Q3_K)
  const float d = dq_f16(bo + 108u);
  sm = vec4(d * dq_q3k_scale(bo + 96u, sub), 0.0, d * dq_q3k_scale(bo + 96u, sub + 1u), 0.0);
#else
  const vec2 dd = unpackHalf2x16(dq_u32(bo + 80u));  // d, dmin
  const uint s0 = dq_u8(bo + sub), s1 = dq_u8(bo + sub + 1u);
  sm = vec4(dd.x * float(s0 & 0xFu), -(dd.y * float(s0 >> 4)), dd.x * float(s1 & 0xFu),
            -(dd.y * float(s1 >> 4)));
#endif
}
#endif
#ifndef DQ_INTDOT
#define DQ_INTDOT 0
#endif
#ifndef DQ_INTDOT_HALVES
#define DQ_INTDOT_HALVES 0
#endif
#ifndef DQ_INTDOT_OFFSET
#define DQ_INTDOT_OFFSET 0
#endif

// ---- iq4_nl: f16 d | qs[16]; iq4_xs: f16 d | u16 scales_h | scales_l[4] | qs[128] ----
// 4-bit codes into a fixed table of levels. The code bytes of 32 elements are laid out as q4_0's
// (element j < 16: low nibble of byte j, 16 + j: high nibble); iq4_xs has 8 such sub-blocks
// (bytes 8 + 16j ..), each with a 6-bit scale. A unit is half the code bytes of 32 elements.
#if defined(WTYPE_IQ4_NL) || defined(WTYPE_IQ4_XS) || defined(WTYPE_MXFP4)
// mxfp4 is iq4_nl's layout with other levels (FP4 values doubled) and an E8M0 scale byte.
#if defined(WTYPE_MXFP4)
const float DQ_IQ4_LEVELS[16] = float[16](0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0,
                                          0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0);
#else
const float DQ_IQ4_LEVELS[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                          1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
#endif
vec4 dq_iq4_levels(uint c) {  // four codes, one per byte
  return vec4(DQ_IQ4_LEVELS[c & 0xFu], DQ_IQ4_LEVELS[(c >> 8) & 0xFu],
              DQ_IQ4_LEVELS[(c >> 16) & 0xFu], DQ_IQ4_LEVELS[c >> 24]);
}
// qo: the 16 code bytes of 32 elements; d: their scale. Elements i .. i + 3 (i % 4 == 0).
vec4 dq_iq4(uint qo, float d, uint i) {
#if defined(WTYPE_MXFP4)
  const uint c = (dq_u32_any(qo + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
#else
  const uint c = (dq_u32(qo + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
#endif
  return d * dq_iq4_levels(c);
}
// The scale of sub-block j's 32 elements of the block at bo, and where their code bytes start.
#if defined(WTYPE_IQ4_NL)
float dq_iq4_scale(uint bo, uint j) { return dq_f16(bo); }
uint dq_iq4_codes(uint bo, uint j) { return bo + 2u; }
#elif defined(WTYPE_MXFP4)
float dq_iq4_scale(uint bo, uint j) { return exp2(float(int(dq_u8(bo))) - 128.0); }
uint dq_iq4_codes(uint bo, uint j) { return bo + 1u; }
#else
float dq_iq4_scale(uint bo, uint j) {
  const uint low = (dq_u8(bo + 4u + (j >> 1)) >> (4u * (j & 1u))) & 0xFu;
  const uint high = (dq_u16(bo + 2u) >> (2u * j)) & 3u;
  return dq_f16(bo) * float(int(low | (high << 4)) - 32);
}
uint dq_iq4_codes(uint bo, uint j) { return bo + 8u + 16u * j; }
#endif
// Unit u: sub-block j = u >> 1 of the row (32 elements), half h = u & 1 of its code bytes.
void dq_unit(uint rb, uint u, out vec4 v[DQ_GROUPS], out uint col[DQ_GROUPS]) {
  const uint j = u >> 1, h = u & 1u;
  const uint bo = rb + (32u * j / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;
  const uint sj = j % (DQ_BLOCK_SIZE / 32u);  // sub-block in its block
  const float d = dq_iq4_scale(bo, sj);
  const uint qo = dq_iq4_codes(bo, sj);
  [[unroll]] for (uint g = 0; g < 4; ++g) {
    const uint i = 16u * (g >> 1) + 8u * h + 4u * (g & 1u);  // element in the 32
    v[g] = dq_iq4(qo, d, i);
    col[g] = 32u * j + i;
  }
}
#endif

// ---- dq_vec4(rb, c): the four elements at columns c .. c + 3 (c % 4 == 0) of the row at rb ----
// For the tiled GEMM (matmul_tiled.comp), which stages a K-slice of 32 columns of many rows at
// a time. The same arithmetic, in the same order, as dq_unit: the two agree bit for bit.
// f32/f16/bf16: the caller reads columns past the last whole vec4 with dq_one.

#if defined(WTYPE_F32)
vec4 dq_vec4(uint rb, uint c) {
  const uint i = (rb >> 2) + c;
  return uintBitsToFloat(uvec4(wq[i], wq[i + 1], wq[i + 2], wq[i + 3]));
}
#elif defined(WTYPE_F16) || defined(WTYPE_BF16)
vec4 dq_vec4(uint rb, uint c) {
  const uint off = rb + 2u * c;
  return vec4(dq_pair(dq_u32(off)), dq_pair(dq_u32(off + 4u)));
}
#elif defined(WTYPE_Q8_0)
vec4 dq_vec4(uint rb, uint c) {
  const uint bo = rb + (c >> 5) * DQ_BLOCK_BYTES;
  return dq_sbytes(dq_u32(bo + 2u + (c & 31u))) * dq_f16(bo);
}
#elif defined(WTYPE_Q4_0) || defined(WTYPE_Q4_1) || defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
vec4 dq_vec4(uint rb, uint c) {
  const uint bo = rb + (c >> 5) * DQ_BLOCK_BYTES;
  const uint i = c & 31u;  // element in the block: low nibbles 0..15, high 16..31
  uint q = (dq_u32(bo + DQ_QS + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
#if defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
  q |= dq_spread4((dq_u32(bo + DQ_QH) >> i) & 0xFu) << 4;  // the fifth bit of element i: qh bit i
#endif
#if defined(WTYPE_Q4_0) || defined(WTYPE_Q5_0)
#if defined(WTYPE_Q4_0)
  const float zero = 8.0;
#else
  const float zero = 16.0;
#endif
  return (dq_bytes(q) - zero) * dq_f16(bo);
#else
  const vec2 dm = unpackHalf2x16(dq_u32(bo));  // d, m
  return dq_bytes(q) * dm.x + dm.y;
#endif
}
#elif defined(WTYPE_Q4_K) || defined(WTYPE_Q5_K)
vec4 dq_vec4(uint rb, uint c) {
  const uint bo = rb + (c >> 8) * DQ_BLOCK_BYTES;
  const uint i = c & 255u;
  const uint p = i >> 6, hi = (i >> 5) & 1u, j = i & 31u;  // sub-block 2p + hi, byte j
  const vec2 dd = unpackHalf2x16(dq_u32(bo));  // d, dmin
  const vec2 sm = dq_scale_min(dq_u32(bo + 4u), dq_u32(bo + 8u), dq_u32(bo + 12u), 2u * p + hi);
#if defined(WTYPE_Q4_K)
  const uint qs = bo + 16u;
#else
  const uint qs = bo + 48u;
#endif
  uint q = (dq_u32(qs + 32u * p + j) >> (4u * hi)) & 0x0F0F0F0Fu;
#if defined(WTYPE_Q5_K)
  q |= ((dq_u32(bo + 16u + j) >> (2u * p + hi)) & 0x01010101u) << 4;
#endif
  return dd.x * sm.x * dq_bytes(q) - dd.y * sm.y;
}
#elif defined(WTYPE_Q6_K)
vec4 dq_vec4(uint rb, uint c) {
  const uint bo = rb + (c >> 8) * DQ_BLOCK_BYTES;
  const uint i = c & 255u;
  const uint n = i >> 7, g = (i >> 5) & 3u, l = i & 31u;
  const uint la = dq_u32(bo + 64u * n + 32u * (g & 1u) + l);
  const uint qh = dq_u32(bo + 128u + 32u * n + l);
  const uint q = ((la >> (4u * (g >> 1))) & 0x0F0F0F0Fu) | (((qh >> (2u * g)) & 0x03030303u) << 4);
  const float a = dq_f16(bo + 208u) * float(dq_i8(bo + 192u + 8u * n + 2u * g + (l >> 4)));
  return a * (dq_bytes(q) - 32.0);
}
#elif defined(WTYPE_Q2_K) || defined(WTYPE_Q3_K)
vec4 dq_vec4(uint rb, uint c) {
  const uint i = c & 255u;
  return dq_k23(rb + (c >> 8) * DQ_BLOCK_BYTES, i >> 7, (i >> 5) & 3u, i & 31u);
}
#elif defined(WTYPE_IQ4_NL) || defined(WTYPE_IQ4_XS) || defined(WTYPE_MXFP4)
vec4 dq_vec4(uint rb, uint c) {
  const uint bo = rb + (c / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;
  const uint sj = (c % DQ_BLOCK_SIZE) >> 5;
  return dq_iq4(dq_iq4_codes(bo, sj), dq_iq4_scale(bo, sj), c & 31u);
}
#endif
