// Every push-constant block, defined once (STYLE rule 10). Each is mirrored by a C++ struct in
// engine/ops/push_constants.hpp with a static_assert on its size; change both together.

#ifdef PUSH_ELEMENTWISE
layout(push_constant) uniform PushElementwise {
  uint n;  // elements
} pc;
#endif

#ifdef PUSH_ROWS
// Row-wise ops over a [nrows, ncols] f32 matrix (RMSNorm, softmax).
layout(push_constant) uniform PushRows {
  uint ncols;
  uint nrows;
  float param;  // RMSNorm: epsilon; softmax: scale applied before the max
} pc;
#endif

#ifdef PUSH_MATMUL
// y[t, row0 + r] = sum_c W[r, c] * x[t, c] for one weight chunk: r < nrows (the chunk's rows),
// t < ntok; x: [ntok, ncols] f32, y row stride y_stride.
layout(push_constant) uniform PushMatmul {
  uint ncols;
  uint nrows;     // rows of this chunk
  uint row0;      // the chunk's first row in the whole weight (and in y)
  uint y_stride;  // elements between token rows of y (rows of the whole weight)
  uint ntok;
} pc;
#endif

#ifdef PUSH_GET_ROWS
// out[t, :] = W[ids[t], :] for the ids inside this chunk's rows [row0, row0 + nrows); the
// dispatch of the chunk with row0 == 0 also writes zeros for ids >= nrows_total.
layout(push_constant) uniform PushGetRows {
  uint ncols;
  uint nrows;        // rows of this chunk
  uint row0;         // the chunk's first row
  uint nrows_total;  // rows of the whole weight
  uint ntok;
} pc;
#endif
