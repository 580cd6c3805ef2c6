// Shared by every shader: the workgroup size as specialization constant 0 (docs/ARCHITECTURE.md, shaders) and
// the extensions every variant may use.
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG_SIZE = 128;
