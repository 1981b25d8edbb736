// Thread control shared by the AOT kernels (included by csrc/*.cc).
#pragma once
#ifdef _OPENMP
#include <omp.h>
#endif

// Team size of the OpenMP region, set once from Python (ascend_kernels.aot.set_num_threads):
// 0 = OpenMP's default. The caller sizes it to the cores MindSpore's own pool leaves free, so the
// kernel's workers do not compete with the framework's threads. Last team size kept for checks.
static int g_num_threads = 1;
static int g_last_team = 0;
extern "C" int AscendKernelsSetNumThreads(int n) { g_num_threads = n < 0 ? 0 : n; return g_num_threads; }
extern "C" int AscendKernelsLastTeamSize() { return g_last_team; }
static inline int team_size() {
#ifdef _OPENMP
  return g_num_threads > 0 ? g_num_threads : omp_get_max_threads();
#else
  return 1;
#endif
}
static inline void record_team() {
#ifdef _OPENMP
  if (omp_get_thread_num() == 0) g_last_team = omp_get_num_threads();
#else
  g_last_team = 1;
#endif
}
