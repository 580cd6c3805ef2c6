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

#ifdef PUSH_MATVEC
// y[nrows] = W[nrows, ncols] * x[ncols]; W row-major with row stride `stride` elements.
layout(push_constant) uniform PushMatvec {
  uint ncols;
  uint nrows;
  uint stride;
} pc;
#endif

#ifdef PUSH_SAMPLE
// Token selection over logits[nrows, ncols] (argmax, sampler): one workgroup per row.
layout(push_constant) uniform PushSample {
  uint ncols;
  uint nrows;
} pc;
#endif
