// The row gather of the grouped expert matmuls (matmul.comp and matmul_tiled.comp with -DEXPERTS;
// docs/ARCHITECTURE.md "Mixture of experts"), or the identity without it (every other matmul),
// so that one body serves both. The including shader has declared pc (PUSH_MATMUL_EXPERTS with
// EXPERTS) and calls experts_begin() first: false means the workgroup has no pairs to do.
//   w_base_       the expert's first row in the chunk (grid.z: the step's active experts)
//   x_row(i)      the x row of the workgroup's i-th token or pair
//   y_row(i)      its y row
//   tok_count()   the tokens or pairs there are (i < tok_count())
//   b_base_       the expert's first row in the bias (aux: the biases of every expert)
//   glu_bias(n)   the paired epilogue's biases of rows n, n + 1
#ifdef EXPERTS
layout(binding = 4) readonly buffer Route { uint route[]; };
uint w_base_ = 0;
uint b_base_ = 0;
uint e_first_ = 0;  // the expert's first pair in the grouped list
uint e_count_ = 0;  // its pairs
uint x_row(uint i) { return route[pc.entries + e_first_ + i] / pc.x_div; }
uint y_row(uint i) { return route[pc.entries + e_first_ + i]; }
uint tok_count() { return e_count_; }
// tok0: the workgroup's first pair of its expert. A tile past the expert's count reads nothing
// (a decode step touches only the chosen experts' rows).
bool experts_begin(uint tok0) {
  if (gl_WorkGroupID.z >= route[pc.n_active]) return false;
  const uint e = route[pc.active_experts + gl_WorkGroupID.z];
  if (e < pc.expert0 || e - pc.expert0 >= pc.chunk_experts) return false;  // another chunk's
  e_count_ = route[pc.counts + e];
  if (tok0 >= e_count_) return false;
  e_first_ = route[pc.offsets + e];
  w_base_ = (e - pc.expert0) * pc.nrows;
  b_base_ = e * pc.nrows;
  return true;
}
#else
const uint w_base_ = 0;
const uint b_base_ = 0;
uint x_row(uint i) { return i; }
uint y_row(uint i) { return i; }
uint tok_count() { return pc.ntok; }
bool experts_begin(uint tok0) { return true; }
#endif

// Epilogue 5's (gate, up) biases of weight rows n, n + 1 (aux, the includer's binding 3, from
// b_base_); (0, 0) for the other epilogues. Read whatever aux holds (within its length) and
// selected, not branched on (see glu() in common.glsl).
vec2 glu_bias(uint n) {
  const uint last = uint(aux.length()) - 1u;
  const vec2 b = vec2(aux[min(b_base_ + n, last)], aux[min(b_base_ + n + 1u, last)]);
  return mix(vec2(0.0), b, bvec2(pc.epilogue == 5u));
}
