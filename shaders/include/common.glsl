// Shared by every shader: the workgroup size as specialization constant 0 (docs/ARCHITECTURE.md, shaders) and
// the extensions every variant may use.
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG_SIZE = 128;

// GELU's tanh form (as llama.cpp computes it: bert's FFN, Gemma's GeGLU), written as
// v * sigmoid(2t) = 0.5 v (1 + tanh(t)), so that glu() below is one formula for every gate; t is
// clamped where tanh is 1 or -1 in f32 anyway, so no exp overflows.
float gelu_t(float v) {
  return clamp(0.7978845608 * (v + 0.044715 * v * v * v), -10.0, 10.0);
}
float gelu_tanh(float v) {
  return v / (1.0 + exp(-2.0 * gelu_t(v)));
}

// The gated activations of the paired matmul epilogues (ops::Epilogue 3 swiglu, 4 geglu, 5
// swiglu_oai), each a * sigmoid(z) * b: swiglu silu(g) u = g sigmoid(g) u; geglu gelu(g) u;
// swiglu_oai (gpt-oss, as llama.cpp's) the gate clamped from above and up on both sides at 7,
// g sigmoid(1.702 g) (u + 1). exp overflows to inf for z < -88 and the quotient is -0. Selects,
// not branches: the epilogue is unrolled over a register block, and a three-way branch there
// multiplied lavapipe's compile time (q4_0's GEMV, 8-token GEMV and tiled GEMM: 3 min 40 s
// against 9 s with selects, 8.4 s with the two-way branch of swiglu and geglu alone).
float glu(uint epilogue, float g, float u) {
  const bool oai = epilogue == 5u;
  const float a = mix(g, min(g, 7.0), oai);
  const float z = mix(mix(g, 2.0 * gelu_t(g), epilogue == 4u), 1.702 * a, oai);
  const float b = mix(u, clamp(u, -7.0, 7.0) + 1.0, oai);
  return a / (1.0 + exp(-z)) * b;
}
