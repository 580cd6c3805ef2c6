// RoPE's rotation of one pair (x0, x1) by theta = position * inv_freq, shared by rope.comp and
// rope_kv.comp so both turn every pair bit for bit alike.
vec2 rope_rotate(float x0, float x1, float theta) {
  // Reduce to [-pi, pi] before cos/sin: Vulkan bounds their error only there, and theta reaches
  // thousands of radians at long positions. 2*pi = C1 + C2 with C1 = 201/32 exact in 8 bits,
  // so k * C1 is exact for k < 2^16 and theta - k * C1 is exact (Sterbenz).
  precise const float k = round(theta * 0.15915494309189535);
  precise const float r = (theta - k * 6.28125) - k * 1.9353071795864769e-3;
  const float c = cos(r), s = sin(r);
  return vec2(x0 * c - x1 * s, x0 * s + x1 * c);
}

// Element indices of pair i of a head row starting at `base`: ROPE_NORMAL pairs (x[2i], x[2i+1])
// (llama.cpp mode 0), ROPE_NEOX pairs (x[i], x[i + half]) (llama.cpp NEOX mode).
uvec2 rope_pair(uint base, uint i, uint half_dim) {
#if defined(ROPE_NORMAL)
  return uvec2(base + 2 * i, base + 2 * i + 1);
#elif defined(ROPE_NEOX)
  return uvec2(base + i, base + i + half_dim);
#else
#error "define ROPE_NORMAL or ROPE_NEOX"
#endif
}
