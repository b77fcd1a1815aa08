#version 450
// Integer xorshift loop for the Venus overhead benchmark: each invocation runs `iters`
// rounds and stores the result, so device time scales with iters × invocations.
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { uint iters; uint seed; } pc;
layout(std430, set = 0, binding = 0) buffer D { uint data[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    uint x = i * 2654435761u + pc.seed + 1u;
    for (uint k = 0u; k < pc.iters; k++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
    }
    data[i] = x;
}
