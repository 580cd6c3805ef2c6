// The row gather of the grouped expert matmuls (matmul.comp and matmul_tiled.comp with -DEXPERTS;
// docs/ARCHITECTURE.md "Mixture of experts"), or the identity without it (every other matmul),
// so that one body serves both. The including shader has declared pc (PUSH_MATMUL_EXPERTS with
// EXPERTS) and calls experts_begin() first: false means the workgroup has no pairs to do.
//   w_base_       the expert's first row in the chunk (grid.z: the step's active experts)
//   x_row(i)      the x row of the workgroup's i-th token or pair
//   y_row(i)      its y row
//   tok_count()   the tokens or pairs there are (i < tok_count())
#ifdef EXPERTS
layout(binding = 4) readonly buffer Route { uint route[]; };
uint w_base_ = 0;
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
  return true;
}
#else
const uint w_base_ = 0;
uint x_row(uint i) { return i; }
uint y_row(uint i) { return i; }
uint tok_count() { return pc.ntok; }
bool experts_begin(uint tok0) { return true; }
#endif
