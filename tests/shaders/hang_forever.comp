#version 450
// Fault injection: never ends. o[1] is zero and nothing writes it, so the loop spins
// (each iteration has a side effect, so it cannot be optimised away) until the
// daemon's GPU-hang watchdog kills the worker.
layout(local_size_x = 1) in;
layout(set = 0, binding = 0) buffer Out { uint o[]; } outp;
void main() {
    while (outp.o[1] == 0u) {
        atomicAdd(outp.o[0], 1u);
    }
}
