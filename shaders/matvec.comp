#version 450
#extension GL_GOOGLE_include_directive : require
// Matrix-vector product y = W x: W[nrows, ncols] in WEIGHT_TYPE (f32 or f16 storage), x and y
// f32, f32 accumulation. A workgroup computes ROWS rows; its invocations stride over the
// columns (coalesced reads of each row) and reduce with subgroup arithmetic.
#include "common.glsl"
#include "reduce.glsl"
#define PUSH_MATVEC
#include "push_constants.glsl"

#if defined(WEIGHT_F16)
#extension GL_EXT_shader_16bit_storage : require
#define WEIGHT_TYPE float16_t
#elif defined(WEIGHT_F32)
#define WEIGHT_TYPE float
#else
#error "matvec.comp: define WEIGHT_F32 or WEIGHT_F16"
#endif

layout(constant_id = 1) const uint ROWS = 1;

layout(binding = 0) readonly buffer Wt { WEIGHT_TYPE w[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) writeonly buffer Y { float y[]; };

void main() {
  const uint row0 = gl_WorkGroupID.x * ROWS;
  float acc[ROWS];
  [[unroll]] for (uint r = 0; r < ROWS; ++r) acc[r] = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    const float xv = x[c];
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      if (row0 + r < pc.nrows) acc[r] += float(w[(row0 + r) * pc.stride + c]) * xv;
    }
  }
  [[unroll]] for (uint r = 0; r < ROWS; ++r) {
    const float sum = wg_sum(acc[r]);
    if (gl_LocalInvocationID.x == 0 && row0 + r < pc.nrows) y[row0 + r] = sum;
  }
}
