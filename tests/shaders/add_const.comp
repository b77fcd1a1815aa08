#version 450
// data[i] = data[i] * mul + add (push constants); used by the sync tests.
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { uint mul; uint add; uint n; } pc;
layout(std430, set = 0, binding = 0) buffer D { uint data[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) data[i] = data[i] * pc.mul + pc.add;
}
