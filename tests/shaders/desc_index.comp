#version 450
#extension GL_EXT_nonuniform_qualifier : require
// out[i] = in[i % 5].v[i / 5] * (i % 5 + 1), with the input buffer chosen per
// invocation from a runtime-sized, partially bound, update-after-bind array.
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer Out { uint o[]; } outp;
layout(set = 0, binding = 1) buffer In { uint v[]; } inputs[];
layout(push_constant) uniform Push { uint n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    uint k = i % 5u;
    outp.o[i] = inputs[nonuniformEXT(k)].v[i / 5u] * (k + 1u);
}
