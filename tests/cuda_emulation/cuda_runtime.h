/* Tests only: what the generated CUDA sources take from cuda_runtime.h, for compiling them as host C++
   (g++ -I tests/cuda_emulation). A launch becomes one loop over the grid's threads, in order; device
   memory is host memory; atomicAdd is a plain add (one thread at a time). This runs the CUDA
   renderings' own code (the one-atom-per-thread paths of atom.c.j2, the launchers, the design rows'
   accumulation) where there is no GPU; it says nothing about races or speed on one. */
#ifndef ETN_CUDA_EMULATION_H
#define ETN_CUDA_EMULATION_H
#include <stddef.h>
#include <string.h>

#define __global__
#define __device__
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)

typedef int cudaError_t;
enum { cudaSuccess = 0 };

struct etn_dim3 { long long x; };
static etn_dim3 threadIdx, blockIdx, blockDim;
static long long etn_emulated_threads, etn_emulated_thread;

static inline void etn_emulated_grid(long long blocks, long long threads) {
    etn_emulated_threads = blocks * threads;
    etn_emulated_thread = -1;
    blockDim.x = threads;
}

static inline int etn_emulated_next(void) {
    etn_emulated_thread++;
    blockIdx.x = etn_emulated_thread / blockDim.x;
    threadIdx.x = etn_emulated_thread % blockDim.x;
    return etn_emulated_thread < etn_emulated_threads;
}

#define ETN_LAUNCH(kernel, blocks, threads) \
    for (etn_emulated_grid((long long)(blocks), (long long)(threads)); etn_emulated_next();) kernel

static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
static inline cudaError_t cudaMemset(void *p, int v, size_t n) { memset(p, v, n); return cudaSuccess; }
static inline const char *cudaGetErrorString(cudaError_t) { return "no error (host emulation)"; }
static inline double atomicAdd(double *x, double v) { const double old = *x; *x += v; return old; }

#endif
