#version 450
layout(local_size_x = 16, local_size_y = 16) in;
layout(constant_id = 0) const uint N = 1;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) writeonly buffer C { float c[]; };
void main() {
    uint row = gl_GlobalInvocationID.y;
    uint col = gl_GlobalInvocationID.x;
    if (row >= N || col >= N) return;
    float acc = 0.0;
    for (uint k = 0; k < N; k++) acc += a[row * N + k] * b[k * N + col];
    c[row * N + col] = acc;
}
