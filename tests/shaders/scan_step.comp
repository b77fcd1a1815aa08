#version 450
// One Hillis-Steele step: dst[i] = src[i] + (i >= offset ? src[i - offset] : 0).
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { uint offset; uint n; } pc;
layout(std430, set = 0, binding = 0) readonly buffer S { uint src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer D { uint dst[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    uint v = src[i];
    if (i >= pc.offset) v += src[i - pc.offset];
    dst[i] = v;
}
