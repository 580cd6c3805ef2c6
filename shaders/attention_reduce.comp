#version 450
#extension GL_GOOGLE_include_directive : require
// Flash-decoding combine: out row = sum_i w_i O_i / sum_i w_i l_i with w_i = exp(m_i - max m),
// over the key ranges i that hold keys of the row (range i starts at key i * range_keys, from
// split_range_keys of the row's sequence as attention.comp computed it; the row attends keys
// 0..min(position, last_key)). One workgroup per (token, head) row; grid x (* z
// when x overflows the device limit). Ranges past the row's keys were either skipped or hold
// garbage from a workgroup shared with longer rows; they are never read.
#include "common.glsl"
#define PUSH_ATTENTION_REDUCE
#include "push_constants.glsl"
#include "attention_split.glsl"

layout(constant_id = 1) const uint HEAD_DIM = 128;
const uint HD2 = HEAD_DIM / 2;

layout(binding = 0) readonly buffer Part { vec2 part[]; };  // attention.comp's SPLIT layout
layout(binding = 1) readonly buffer Pos { uint positions[]; };
layout(binding = 2) readonly buffer QueryStart { uint query_start[]; };
layout(binding = 3) writeonly buffer Out { vec2 o[]; };

void main() {
  const uint row = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (row >= pc.rows) return;
  const uint token = row / pc.n_heads;
  const uint ntok = pc.rows / pc.n_heads;
  uint lo = 0, hi = pc.nseq - 1;  // the token's sequence: the last s with query_start[s] <= token
  while (lo < hi) {
    const uint mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= token) lo = mid; else hi = mid - 1;
  }
  const uint q_end = min(query_start[lo + 1], ntok);
  const uint range_keys = split_range_keys(min(positions[q_end - 1], pc.last_key) + 1, pc.nsplit,
                                           pc.split_keys, pc.key_tile);
  const uint nvalid = min(min(positions[token], pc.last_key) / range_keys + 1, pc.nsplit);
  const uint ml = pc.rows * pc.nsplit * HD2 + row * pc.nsplit;  // (m, l) of range 0

  float mx = part[ml].x;
  for (uint i = 1; i < nvalid; ++i) mx = max(mx, part[ml + i].x);
  float l = 0.0;
  for (uint i = 0; i < nvalid; ++i) l += exp(part[ml + i].x - mx) * part[ml + i].y;
  const float inv_l = 1.0 / l;
  for (uint d = gl_LocalInvocationID.x; d < HD2; d += WG_SIZE) {
    vec2 acc = vec2(0.0);
    for (uint i = 0; i < nvalid; ++i) {
      acc += exp(part[ml + i].x - mx) * part[(row * pc.nsplit + i) * HD2 + d];
    }
    o[row * HD2 + d] = acc * inv_l;
  }
}
