#version 450
#extension GL_GOOGLE_include_directive : require
// Row gather (embedding lookup) from one chunk of a weight in its GGUF block format:
// out[t, :] = dequant(W[ids[t], :]) for the tokens whose id falls in this chunk's rows
// [row0, row0 + nrows); the dispatch of the chunk with row0 == 0 also writes zeros for ids at or
// past nrows_total, so every output row is written by exactly one dispatch. Decoding is the same
// as matmul's (dequant.glsl), so the values are those of gguf::dequantize.
//
// Grid: x strides over the row's decode units, y (folded into z past the limit) over tokens.
#include "common.glsl"
#define PUSH_GET_ROWS
#include "push_constants.glsl"

layout(binding = 0) readonly buffer Wq { uint wq[]; };
layout(binding = 1) readonly buffer Ids { uint ids[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };

#include "dequant.glsl"

void main() {
  const uint t = gl_WorkGroupID.y + gl_WorkGroupID.z * gl_NumWorkGroups.y;
  if (t >= pc.ntok) return;
  const uint id = ids[t];
  const uint first = gl_WorkGroupID.x * WG_SIZE + gl_LocalInvocationID.x;
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  const uint orow = t * pc.ncols;
  if (id >= pc.nrows_total) {
    if (pc.row0 != 0) return;
    for (uint c = first; c < pc.ncols; c += stride) outv[orow + c] = 0.0;
    return;
  }
  if (id < pc.row0 || id - pc.row0 >= pc.nrows) return;

  const uint rb = (id - pc.row0) * ((pc.ncols / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES);
  const uint units = pc.ncols / DQ_UNIT;
  for (uint u = first; u < units; u += stride) {
    vec4 v[DQ_GROUPS];
    uint col[DQ_GROUPS];
    dq_unit(rb, u, v, col);
    [[unroll]] for (uint g = 0; g < DQ_GROUPS; ++g) {
      [[unroll]] for (uint i = 0; i < 4; ++i) outv[orow + col[g] + i] = v[g][i];
    }
  }
#if DQ_FLOAT
  for (uint c = units * DQ_UNIT + first; c < pc.ncols; c += stride) outv[orow + c] = dq_one(rb, c);
#endif
}
