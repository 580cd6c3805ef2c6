// Workgroup argmax over (value, index) pairs: the largest value, the lowest index among ties;
// NaN never wins. Shared by argmax.comp and sample.comp (greedy rows). Uses the subgroup
// extensions reduce.glsl enables; include reduce.glsl first.

shared float argmax_val_[WG_SIZE];
shared uint argmax_idx_[WG_SIZE];

const uint kNoIndex = 0xFFFFFFFFu;

// Folds candidate (v, i) into an invocation's running best. Call with increasing i: a strict
// comparison then keeps the lowest index of a tie.
void argmax_fold(inout float best, inout uint best_i, float v, uint i) {
  if (v > best || (best_i == kNoIndex && !isnan(v))) {
    best = v;
    best_i = i;
  }
}

// The workgroup's winner of every invocation's (best, best_i); kNoIndex when no invocation saw a
// non-NaN value. Invocations with no candidate pass (-inf, kNoIndex).
uint wg_argmax(float best, uint best_i) {
  const float m = subgroupMax(best);
  const uint i = subgroupMin(best == m ? best_i : kNoIndex);
  if (subgroupElect()) {
    argmax_val_[gl_SubgroupID] = m;
    argmax_idx_[gl_SubgroupID] = i;
  }
  barrier();
  float bv = argmax_val_[0];
  uint bi = argmax_idx_[0];
  for (uint s = 1; s < gl_NumSubgroups; ++s) {
    const float v = argmax_val_[s];
    const uint vi = argmax_idx_[s];
    if (v > bv || (v == bv && vi < bi)) {
      bv = v;
      bi = vi;
    }
  }
  barrier();  // everyone has read the arrays before the next call overwrites them
  return bi;
}
