// Every push-constant block, defined once (docs/ARCHITECTURE.md, shaders). Each is mirrored by a C++ struct in
// engine/ops/push_constants.hpp with a static_assert on its size; change both together.

#ifdef PUSH_ELEMENTWISE
layout(push_constant) uniform PushElementwise {
  uint n;       // elements
  float param;  // OP_SCALE: the factor; OP_SOFTCAP: the cap
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
// y[t, y0 + row0 + r] = sum_c W[r, c] * x[t, c] for one weight chunk: r < nrows (the chunk's
// rows), t < ntok; x: [ntok, ncols] f32, y row stride y_stride (matmul.comp's EPILOGUE says how
// the sum is stored).
layout(push_constant) uniform PushMatmul {
  uint ncols;
  uint nrows;     // rows of this chunk
  uint row0;      // the chunk's first row in the whole weight
  uint y_stride;  // elements between token rows of y
  uint ntok;
  uint y0;        // y's column of weight row 0 (a slice of a wider y)
  uint epilogue;  // 0 store, 1 accumulate, 2 bias, 3 swiglu, 4 geglu, 5 swiglu_oai (matmul.comp)
} pc;
#endif

#ifdef PUSH_MATMUL_EXPERTS
// The grouped expert matmul (matmul.comp EXPERTS; docs/ARCHITECTURE.md "Mixture of experts"): a
// chunk holds whole experts of `nrows` rows each, `chunk_experts` of them from `expert0`; grid.z
// walks the step's active experts (route[active_experts + z], z < route[n_active]); the rows expert e
// multiplies are the pairs route[entries + route[offsets + e] + i], i < route[counts + e]: pair
// p reads x row p / x_div and writes y row p.
layout(push_constant) uniform PushMatmulExperts {
  uint ncols;
  uint nrows;     // rows of one expert
  uint row0;      // 0
  uint y_stride;
  uint ntok;      // pairs of the step (token, expert slot)
  uint y0;
  uint epilogue;  // 0 store, 2 bias, 3 swiglu, 4 geglu, 5 swiglu_oai
  uint x_div;     // pairs per x row: experts per token (x the tokens) or 1 (x the pairs)
  uint expert0;   // the chunk's first expert
  uint counts;    // route word offsets (ops::MoeRouteLayout)
  uint offsets;
  uint entries;
  uint active_experts;
  uint n_active;
  uint chunk_experts;
} pc;
#endif

#ifdef PUSH_MOE_ROUTE
// The router's choice (moe_route.comp): logits [ntok, stride] (experts in the first n_expert
// columns) -> n_used experts a token and their weights, and the pairs grouped by expert.
layout(push_constant) uniform PushMoeRoute {
  uint ntok;
  uint n_expert;
  uint n_used;
  uint stride;
  uint gating;   // 0: softmax over all experts; 1: softmax over the chosen ones
  uint norm;     // 1: the chosen weights scaled to sum to 1
  uint sel;      // route word offsets (ops::MoeRouteLayout)
  uint weights;
  uint counts;
  uint offsets;
  uint entries;
  uint active_experts;  // the experts with pairs, ascending, and their number
  uint n_active;
} pc;
#endif

#ifdef PUSH_MOE_COMBINE
// x[t, c] += sum_j weight(t, j) * y[t * n_used + j, c], plus, with a shared expert,
// sigmoid(logits[t * stride + gate_col]) * shared[t, c] (moe_combine.comp).
layout(push_constant) uniform PushMoeCombine {
  uint ntok;
  uint ncols;
  uint n_used;
  uint weights;   // route word offset of the weights
  uint shared_expert;  // 1: add the gated shared expert
  uint stride;
  uint gate_col;
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

#ifdef PUSH_SAMPLE
// Token selection over logits[nrows, ncols] (argmax): one workgroup per row.
layout(push_constant) uniform PushSample {
  uint ncols;
  uint nrows;
} pc;
#endif

#ifdef PUSH_SAMPLER
// The sampler over logits[nrows, ncols]: rows cut into `slices` slices of `slice_cols` columns
// (the last one shorter), each slice keeping at most `cand_cap` candidates.
layout(push_constant) uniform PushSampler {
  uint ncols;
  uint nrows;
  uint slices;
  uint slice_cols;
  uint cand_cap;
} pc;
#endif

#ifdef PUSH_BIAS
// out[r, c] = x[r, c] + bias[c] over n = nrows * ncols elements.
layout(push_constant) uniform PushBias {
  uint n;
  uint ncols;
} pc;
#endif

#ifdef PUSH_ROPE
// In-place rotation of x[ntok, nheads, 2 * half] f32.
layout(push_constant) uniform PushRope {
  uint ntok;
  uint nheads;
  uint half_dim;  // head_dim / 2 (pairs per head)
  uint rot_half;  // rotated pairs: rotary dims / 2; the pairs past them stay as they are
} pc;
#endif

#ifdef PUSH_KV_WRITE
// k, v: [ntok, kv_dim] f32 into pools [num_slots, kv_dim]; slots >= num_slots are skipped.
layout(push_constant) uniform PushKvWrite {
  uint ntok;
  uint kv_dim;
  uint num_slots;
} pc;
#endif

#ifdef PUSH_ROPE_KV
// rope_kv.comp: qkv [ntok, qkv_stride] f32 -> q_out, K/V pools of num_slots rows.
layout(push_constant) uniform PushRopeKv {
  uint ntok;
  uint n_heads;
  uint n_kv_heads;
  uint half_dim;    // head_dim / 2
  uint qkv_stride;  // elements between token rows of qkv: (n_heads + 2 n_kv_heads) head_dim
  uint num_slots;
  float eps;        // QK_NORM's epsilon
  uint rot_half;    // rotated pairs: rotary dims / 2 (partial rotary: < half_dim)
  float mscale;     // the rotated pairs times this (LongRoPE's attention factor), as llama.cpp
} pc;
#endif

#ifdef PUSH_ATTENTION
// Paged causal GQA attention (engine/ops/attention.hpp). Rows are (query token, head of the
// GQA group) pairs of one sequence and one KV head; a workgroup takes ROWS of them.
layout(push_constant) uniform PushAttention {
  uint ntok;
  uint nseq;
  uint n_heads;
  uint group;       // n_heads / n_kv_heads
  uint kv_dim;      // n_kv_heads * head_dim: elements per pool row
  uint block_size;  // tokens per KV block
  uint max_blocks;  // row length of the block table
  uint num_blocks;  // blocks in each pool (block ids are clamped below it)
  uint tiles;       // row tiles in the grid: floor(ntok * group / ROWS) + nseq
  float scale;
  uint split_keys;  // SPLIT: the fewest keys per range (a multiple of KEYS)
  uint nsplit;      // SPLIT: ranges in the grid
  uint window;      // sliding window: keys a query attends (itself included); 0: all
  float softcap;    // attention-logit soft-capping: cap * tanh(score / cap); 0: none
  uint sinks;       // 1: sinks[head] is a per-head logit in every row's softmax (gpt-oss); 0: none
} pc;
#endif

