/* kernels/cpu/cpu.h — the CPU backend: each op of kernels/ops.h as cpu_<op>, same signature.
 * Plain fp32 C + OpenMP + OpenBLAS. This backend is the reference every other one is held
 * to, so clarity wins over the last few percent. OpenBLAS is only called from outside
 * OpenMP parallel regions (it has its own threads; nesting them oversubscribes the cores). */
#ifndef VITA_CPU_H
#define VITA_CPU_H

#include "../backend.h"

#define VITA_CPU_DECL(name) __typeof__(name) cpu_##name;
VITA_OPS(VITA_CPU_DECL)
#undef VITA_CPU_DECL

#endif
