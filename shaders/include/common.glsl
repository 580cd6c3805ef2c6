// Shared by every shader: the workgroup size as specialization constant 0 (docs/ARCHITECTURE.md, shaders) and
// the extensions every variant may use.
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG_SIZE = 128;

// GELU's tanh form (as llama.cpp computes it: bert's FFN, Gemma's GeGLU); tanh's argument is
// clamped where tanh is 1 or -1 in f32 anyway, so no exp inside tanh overflows.
float gelu_tanh(float v) {
  const float t = clamp(0.7978845608 * (v + 0.044715 * v * v * v), -10.0, 10.0);
  return 0.5 * v * (1.0 + tanh(t));
}

// The gated activations of the paired matmul epilogues (ops::Epilogue 3 swiglu, 4 geglu): the
// gate's activation times up. silu(g) = g / (1 + exp(-g)); exp overflows to inf for g < -88 and
// the quotient is -0.
float glu(uint epilogue, float g, float u) {
  return (epilogue == 4u ? gelu_tanh(g) : g / (1.0 + exp(-g))) * u;
}
