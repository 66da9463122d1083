// common.glsl: shared by pivot's compute shaders (include after #version and the include extension).
// Push constants: 32 uint words, written by the op's vk function (runtime/vulkan/vk_ops.h).
// Grids are 2-D (x <= 65535 workgroups) so element counts beyond 65535 workgroups work.
layout(push_constant) uniform PvPush { uint u[32]; } pc;

#define PV_WG 256

uint pv_group() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }
// a macro: gl_WorkGroupSize is only known after the shader's local_size layout declaration
#define pv_gid() (pv_group() * gl_WorkGroupSize.x + gl_LocalInvocationID.x)
float pv_pf(uint k) { return uintBitsToFloat(pc.u[k]); }

// dtype codes (pv_dtype)
#define PV_F32 0u
#define PV_F16 1u
#define PV_BF16 2u
#define PV_I32 3u
#define PV_I64 4u
