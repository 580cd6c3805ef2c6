// What attention.comp and attention_tiled.comp share: their bindings, and the rows of a
// workgroup. Rows are the (query token, head of the GQA group) pairs of one sequence and one KV
// head, flattened token-major (row = token * group + head_in_group); a workgroup takes ROWS
// consecutive rows of one (sequence, KV head) (the includer defines ROWS), so every K/V row it
// loads serves all of them: the whole GQA group, and several tokens of a prefill chunk. Grid: x
// (* z when x overflows the device limit) = row tile, y = KV head (and key range, SPLIT).
// Sequence s owns tiles [first_tile(s), first_tile(s + 1)), first_tile(s) = query_start[s] *
// group / ROWS + s, which is increasing and leaves each sequence at least ceil(len * group /
// ROWS) tiles; a workgroup finds its sequence by binary search on it.
//
// Shapes: q, out [ntok, n_heads, HEAD_DIM] f32; pools [num_blocks * block_size, kv_dim] with KV
// head g at columns [g * HEAD_DIM, (g + 1) * HEAD_DIM). Everything moves in element pairs (vec2;
// a packed f16 pair is one uint), so HEAD_DIM needs only be even.

layout(binding = 0) readonly buffer Q { vec2 q[]; };
#if defined(KV_F32)
layout(binding = 1) readonly buffer KPool { vec2 k_pool[]; };
layout(binding = 2) readonly buffer VPool { vec2 v_pool[]; };
#define KV_PAIR vec2
#define UNPACK_KV(x) (x)
#elif defined(KV_F16)
layout(binding = 1) readonly buffer KPool { uint k_pool[]; };
layout(binding = 2) readonly buffer VPool { uint v_pool[]; };
#define KV_PAIR uint
#define UNPACK_KV(x) unpackHalf2x16(x)
#else
#error "attention: define KV_F32 or KV_F16"
#endif
#define LOAD_KV(pool, i) UNPACK_KV(pool[i])
layout(binding = 3) readonly buffer Pos { uint positions[]; };
layout(binding = 4) readonly buffer QStart { uint query_start[]; };
layout(binding = 5) readonly buffer BlockTable { uint block_table[]; };
layout(binding = 6) writeonly buffer Out { vec2 o[]; };
// Attention sinks (pc.sinks != 0; gpt-oss): a learned logit per query head that joins every
// row's softmax as one more score with a zero value: it takes its share of the probability, and
// the keys' shares shrink. Unread (bound to any buffer) without them.
layout(binding = 7) readonly buffer Sinks { float sinks[]; };

const float kNegMax = -3.402823466e+38;  // masked score: exp(kNegMax - m) == 0, never NaN

uint first_tile(uint s) {
  return query_start[s] * pc.group / ROWS + s;
}

// Pool index (in pairs) of column 0 of KV head `kvh` for key position `key` of the sequence whose
// block-table row starts at `bt`. Block ids are clamped so a bad table cannot read past the pool.
uint pool_base(uint bt, uint key, uint kvh) {
  const uint blk = min(block_table[bt + key / pc.block_size], pc.num_blocks - 1);
  return (blk * pc.block_size + key % pc.block_size) * (pc.kv_dim / 2) + kvh * HD2;
}

// The rows of row tile `tile`: its sequence s, its first row and how many (0: past the
// sequence's rows, an empty tile). Workgroup-uniform.
struct RowTile {
  uint s;
  uint q_end;  // the sequence's end in the flat batch
  uint row0;
  uint nrows;
};
RowTile row_tile(uint tile) {
  uint lo = 0, hi = pc.nseq - 1;
  while (lo < hi) {
    const uint mid = (lo + hi + 1) / 2;
    if (first_tile(mid) <= tile) lo = mid; else hi = mid - 1;
  }
  RowTile t;
  t.s = lo;
  t.q_end = min(query_start[lo + 1], pc.ntok);
  t.row0 = query_start[lo] * pc.group + (tile - first_tile(lo)) * ROWS;
  t.nrows = t.row0 >= t.q_end * pc.group ? 0 : min(ROWS, t.q_end * pc.group - t.row0);
  return t;
}

// The first key a query at position `pos` attends: pc.window > 0 is a sliding window of that many
// keys, itself included (llama.cpp's standard rule: key k is masked when pos - k >= window).
uint first_key(uint pos) {
  return pc.window == 0u || pos < pc.window ? 0u : pos + 1u - pc.window;
}

// A score after attention-logit soft-capping (pc.softcap > 0: Gemma 2), on the scaled score as
// llama.cpp applies it; tanh's argument is clamped where tanh is +-1 in f32 anyway.
float capped(float s) {
  return pc.softcap > 0.0 ? pc.softcap * tanh(clamp(s / pc.softcap, -10.0, 10.0)) : s;
}

// What a row's softmax denominator gains from its head's sink: exp(sink - m), where m is the
// running max the row's sum l is relative to (so the output is acc / (l + sink_term)). The
// exponent is clamped below exp's f32 overflow: a sink that dwarfs every score gives outputs of
// about 1e-35 of the values instead of 0 / inf. Row `row` of KV head `kvh` is query head kvh *
// group + row % group.
float sink_term(uint row, uint kvh, float m) {
  return pc.sinks != 0u ? exp(min(sinks[kvh * pc.group + row % pc.group] - m, 80.0)) : 0.0;
}

// Flat index (in pairs) of row `row`'s head in q and out.
uint head_row(uint row, uint kvh) {
  return ((row / pc.group) * pc.n_heads + kvh * pc.group + row % pc.group) * HD2;
}
