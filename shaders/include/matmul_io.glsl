// What the tiled GEMMs (matmul_tiled.comp, matmul_coopmat.comp) share: reading vec4s of the
// weights and activations at any column, and storing one output element with pc.epilogue
// (0 store, 1 accumulate, 2 bias, 3 swiglu, 4 geglu, 5 swiglu_oai; matmul.comp). The including shader declares the
// bindings (0 weights, 1 x, 2 y, 3 aux) and includes dequant.glsl and experts.glsl first (y_row:
// the y row of token t, an expert pair's own row with EXPERTS).

#if defined(INTDOT)
// The integer-dot GEMM (matmul_tiled.comp INTDOT) reads codes, not vec4s: binding 1 is its own.
#elif DQ_FLOAT
// Rows of any length: x rows are not 16-byte aligned, the last vec4 of a row may be partial.
vec4 load_x4(uint row, uint c) {
  const uint i = row * pc.ncols + c;
  if (c + 3u < pc.ncols) return vec4(x[i], x[i + 1], x[i + 2], x[i + 3]);
  vec4 v = vec4(0.0);
  for (uint e = 0; e < 4u && c + e < pc.ncols; ++e) v[e] = x[i + e];
  return v;
}
vec4 load_w4(uint rb, uint c) {
  if (c + 3u < pc.ncols) return dq_vec4(rb, c);
  vec4 v = vec4(0.0);
  for (uint e = 0; e < 4u && c + e < pc.ncols; ++e) v[e] = dq_one(rb, c + e);
  return v;
}
#else
// Quantized rows are whole blocks of 32 or 256: slices never pass the row's end.
layout(binding = 1) readonly buffer X4 { vec4 x4[]; };
vec4 load_x4(uint row, uint c) { return x4[(row * pc.ncols + c) >> 2]; }
vec4 load_w4(uint rb, uint c) { return dq_vec4(rb, c); }
#endif

// The sum s of chunk row r (< pc.nrows) and token t (< pc.ntok), epilogues 0-2.
void store_out(uint r, uint t, float s) {
  const uint i = y_row(t) * pc.y_stride + pc.y0 + pc.row0 + r;
  if (pc.epilogue == 1) {
    y[i] += s;
  } else if (pc.epilogue == 2) {
    y[i] = s + aux[pc.y0 + b_base_ + pc.row0 + r];
  } else {
    y[i] = s;
  }
}

// Epilogues 3-5: the (gate, up) pair of chunk rows (r, r + 1), r even, for token t (5: each
// plus its weight row's bias first).
void store_glu(uint r, uint t, float g, float u) {
  const uint n = pc.row0 + r;
  const vec2 b = glu_bias(n);
  y[y_row(t) * pc.y_stride + pc.y0 + n / 2u] = glu(pc.epilogue, g + b.x, u + b.y);
}
