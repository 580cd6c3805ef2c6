// Workgroup reductions: subgroup arithmetic inside each subgroup, shared memory across them.
// Works for any subgroup size the device picks (shared array sized by WG_SIZE).
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

shared float red_shared_[WG_SIZE];

float wg_sum(float v) {
  v = subgroupAdd(v);
  if (subgroupElect()) red_shared_[gl_SubgroupID] = v;
  barrier();
  float r = 0.0;
  for (uint i = 0; i < gl_NumSubgroups; ++i) r += red_shared_[i];
  // Everyone has read red_shared_ before the next reduction overwrites it.
  barrier();
  return r;
}

float wg_max(float v) {
  v = subgroupMax(v);
  if (subgroupElect()) red_shared_[gl_SubgroupID] = v;
  barrier();
  float r = red_shared_[0];
  for (uint i = 1; i < gl_NumSubgroups; ++i) r = max(r, red_shared_[i]);
  barrier();
  return r;
}
