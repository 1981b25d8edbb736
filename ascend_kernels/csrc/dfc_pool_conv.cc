// DFC gate input for GhostNetV2 (eval): z = conv1x1(avgpool2x2(x)) written zero-padded by p (and
// one extra zero column when `extra` is 1), in one pass (MindSpore Custom op, func_type="aot", CPU).
//
// inputs : x f32 (N, C, H, W) with H, W even; w f32 (O, C) (the 1x1 weights); cfg i32 (2) = [p, extra]
// output : z f32 (N, O, H/2 + 2p, W/2 + 2p + extra)
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel_threads.h"

extern "C" int DfcPoolConv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                           void *stream, void *extra_) {
  (void)stream; (void)extra_; (void)dtypes;
  if (nparam != 4) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const int32_t *cfg = static_cast<const int32_t *>(params[2]);
  float *z = static_cast<float *>(params[3]);
  if (ndims[0] != 4 || ndims[1] != 2 || ndims[3] != 4) return 2;
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t O = shapes[1][0];
  const int64_t p = cfg[0], ex = cfg[1];
  const int64_t h = H / 2, wd = W / 2, hw = h * wd, HZ = h + 2 * p, WZ = wd + 2 * p + ex;
  if (shapes[1][1] != C || H % 2 || W % 2 || shapes[3][0] != N || shapes[3][1] != O || shapes[3][2] != HZ ||
      shapes[3][3] != WZ)
    return 3;
  constexpr int64_t kRows = 4, kCols = 16;
  const int64_t hwp = (hw + kCols - 1) / kCols * kCols;
  const int64_t oblocks = (O + kRows - 1) / kRows;
  std::vector<float> pooled(static_cast<size_t>(N * C * hwp), 0.f);
  const int nt = team_size();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    record_team();
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const float *src = x + (n * C + c) * H * W;
        float *dst = &pooled[static_cast<size_t>((n * C + c) * hwp)];
        for (int64_t y = 0; y < h; ++y)
          for (int64_t xx = 0; xx < wd; ++xx) {
            const float *s = src + 2 * y * W + 2 * xx;
            dst[y * wd + xx] = 0.25f * ((s[0] + s[1]) + (s[W] + s[W + 1]));
          }
      }
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t ob = 0; ob < oblocks; ++ob) {
        const int64_t o0 = ob * kRows, nr = (O - o0 < kRows) ? O - o0 : kRows;
        const float *pn = &pooled[static_cast<size_t>(n * C * hwp)];
        for (int64_t r = 0; r < nr; ++r) std::memset(z + ((n * O + o0 + r) * HZ) * WZ, 0, sizeof(float) * HZ * WZ);
        for (int64_t j0 = 0; j0 < hwp; j0 += kCols) {
          float acc[kRows][kCols] = {};
          for (int64_t c = 0; c < C; ++c) {
            const float *pc = pn + c * hwp + j0;
            for (int64_t r = 0; r < kRows; ++r) {
              const float wv = (r < nr) ? w[(o0 + r) * C + c] : 0.f;
              for (int64_t j = 0; j < kCols; ++j) acc[r][j] += wv * pc[j];
            }
          }
          for (int64_t r = 0; r < nr; ++r) {
            float *zo = z + ((n * O + o0 + r) * HZ + p) * WZ + p;
            for (int64_t j = 0; j < kCols && j0 + j < hw; ++j) {
              const int64_t q = j0 + j;
              zo[(q / wd) * WZ + q % wd] = acc[r][j];
            }
          }
        }
      }
  }
  return 0;
}
