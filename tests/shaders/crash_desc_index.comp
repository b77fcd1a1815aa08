#version 450
#extension GL_EXT_nonuniform_qualifier : require
// Fault injection: indexes a runtime-sized storage-buffer array (two descriptors
// bound) with a push-constant index far out of range. Robust buffer access does not
// cover the array index, and lavapipe dereferences a descriptor past the set: the
// worker process gets SIGSEGV.
layout(local_size_x = 1) in;
layout(set = 0, binding = 0) buffer Out { uint o[]; } outp;
layout(set = 0, binding = 1) buffer In { uint v[]; } inputs[];
layout(push_constant) uniform Push { uint idx; } pc;
void main() {
    inputs[nonuniformEXT(pc.idx)].v[gl_GlobalInvocationID.x] = 0xdeadbeefu;
    outp.o[0] = inputs[nonuniformEXT(pc.idx)].v[1];
}
