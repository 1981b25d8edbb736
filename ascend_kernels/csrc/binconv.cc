// Bit-packed binary convolution for inference (MindSpore Custom op, func_type="aot", CPU).
//
// y[n,o,p] = sum over valid taps of (aw*sw + bw)(aa*sa + aa*ba), with sw, sa in {-1,+1}:
//   = aw*aa*S_wa + aw*aa*ba*S_w + bw*aa*S_a + bw*aa*ba*n_valid
// S_wa = n_valid - 2*popcount(a xor w) over the valid taps (channel bits, 64 per word; unused
// high bits are 0 in both words). Zero padding contributes nothing: padded taps are skipped,
// which is exactly the float conv of the binarized tensors zero-padded after binarization.
// Activation bit = (x >= ba) (threshold of the coded AdaBin form; 0 -> +1 like LCE).
//
// inputs : x f32 (N,C,H,W); wpack i64 (O, KH*KW, NW); wsum f32 (O, KH*KW) = sum_c sw;
//          cfg i32 (8) = [stride, pad_h, pad_w, dilation, C, KH, KW, 0];
//          act f32 (2) = [aa, ba]; wsc f32 (O, 2) = [aw, bw]
// output : y f32 (N, O, HO, WO)
#include <cstdint>
#include <cstring>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX2__
#include <immintrin.h>
#endif

static inline int popc64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(v);
#else
  int c = 0;
  while (v) { v &= v - 1; ++c; }
  return c;
#endif
}

// sum_k popcount(a[k] ^ b[k]); AVX2 nibble-LUT popcount (4 words per step) when available
// (this CPU has POPCNT but no AVX-512 VPOPCNTDQ), scalar POPCNT otherwise.
static inline int64_t xor_popcount(const uint64_t *a, const uint64_t *b, int64_t L) {
  int64_t r = 0, k = 0;
#ifdef __AVX2__
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i acc = _mm256_setzero_si256();
  while (k + 4 <= L) {
    // byte counts (<= 8 per step) accumulate for up to 31 steps before the horizontal sum
    __m256i bytes = _mm256_setzero_si256();
    for (int step = 0; step < 31 && k + 4 <= L; ++step, k += 4) {
      const __m256i v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + k)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b + k)));
      const __m256i lo = _mm256_and_si256(v, low);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
      bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi)));
    }
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(bytes, _mm256_setzero_si256()));
  }
  alignas(32) int64_t tmp[4];
  _mm256_store_si256(reinterpret_cast<__m256i *>(tmp), acc);
  r = tmp[0] + tmp[1] + tmp[2] + tmp[3];
#endif
  for (; k < L; ++k) r += popc64(a[k] ^ b[k]);
  return r;
}

#ifdef __AVX2__
// four output channels at once (weights w, w + L, w + 2L, w + 3L): shares the activation loads
static inline void xor_popcount4(const uint64_t *a, const uint64_t *w, int64_t L, int64_t *out) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[4] = {zero, zero, zero, zero};
  int64_t k = 0;
  while (k + 4 <= L) {
    __m256i by[4] = {zero, zero, zero, zero};
    for (int step = 0; step < 31 && k + 4 <= L; ++step, k += 4) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + k));
      for (int q = 0; q < 4; ++q) {
        const __m256i v = _mm256_xor_si256(av, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(w + q * L + k)));
        const __m256i lo = _mm256_and_si256(v, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        by[q] = _mm256_add_epi8(by[q], _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi)));
      }
    }
    for (int q = 0; q < 4; ++q) acc[q] = _mm256_add_epi64(acc[q], _mm256_sad_epu8(by[q], zero));
  }
  for (int q = 0; q < 4; ++q) {
    alignas(32) int64_t tmp[4];
    _mm256_store_si256(reinterpret_cast<__m256i *>(tmp), acc[q]);
    int64_t r = tmp[0] + tmp[1] + tmp[2] + tmp[3];
    for (int64_t kk = k; kk < L; ++kk) r += popc64(a[kk] ^ w[q * L + kk]);
    out[q] = r;
  }
}
#endif

extern "C" int BinaryConvPacked(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                void *stream, void *extra) {
  (void)stream; (void)extra; (void)dtypes;
  if (nparam != 7) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const uint64_t *wp = static_cast<const uint64_t *>(params[1]);
  const float *wsum = static_cast<const float *>(params[2]);
  const int32_t *cfg = static_cast<const int32_t *>(params[3]);
  const float *act = static_cast<const float *>(params[4]);
  const float *wsc = static_cast<const float *>(params[5]);
  float *y = static_cast<float *>(params[6]);
  if (ndims[0] != 4 || ndims[6] != 4) return 2;
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t O = shapes[1][0], T = shapes[1][1], NW = shapes[1][2];
  const int64_t HO = shapes[6][2], WO = shapes[6][3];
  const int s = cfg[0], ph = cfg[1], pw = cfg[2], d = cfg[3], KH = cfg[5], KW = cfg[6];
  if (cfg[4] != C || T != KH * KW || NW != (C + 63) / 64) return 3;
  const float aa = act[0], ba = act[1];

  // 1) pack activations: apack[n][y][x][w], asum[n][y][x] = sum_c sa
  std::vector<uint64_t> apack(static_cast<size_t>(N * H * W * NW), 0);
  std::vector<float> asum(static_cast<size_t>(N * H * W), 0.f);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t yy = 0; yy < H; ++yy) {
      uint64_t *row = &apack[static_cast<size_t>(((n * H + yy) * W) * NW)];
      // branchless: 64-channel words built in a register per (x, word)
      for (int64_t wd = 0; wd < NW; ++wd) {
        const int64_t c0 = wd * 64, c1 = (c0 + 64 < C) ? c0 + 64 : C;
        for (int64_t xx = 0; xx < W; ++xx) {
          uint64_t word = 0;
          const float *src = x + ((n * C + c0) * H + yy) * W + xx;
          for (int64_t c = c0; c < c1; ++c, src += H * W)
            word |= static_cast<uint64_t>(*src >= ba) << (c - c0);
          row[xx * NW + wd] = word;
        }
      }
      for (int64_t xx = 0; xx < W; ++xx) {
        int cnt = 0;
        for (int64_t wd = 0; wd < NW; ++wd) cnt += popc64(row[xx * NW + wd]);
        asum[static_cast<size_t>((n * H + yy) * W + xx)] = static_cast<float>(2 * cnt - C);
      }
    }
  }

  // 2) xor-popcount convolution. For every output position the activation words of all KH*KW
  // taps are gathered into one contiguous buffer (0 for padded taps), so each output channel is
  // one contiguous xor-popcount over T*NW words. A padded tap then counts popcount(w) mismatches,
  // which is removed with the per-(o, tap) weight popcounts (LCE-style padding correction).
  const int64_t L = T * NW;
  std::vector<int32_t> wpc(static_cast<size_t>(O * T), 0);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < NW; ++k) wpc[static_cast<size_t>(o * T + t)] += popc64(wp[(o * T + t) * NW + k]);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t oy = 0; oy < HO; ++oy) {
      // gather the taps of the whole output row once: rowbuf[ox][t][k]
      std::vector<uint64_t> rowbuf(static_cast<size_t>(WO * L));
      std::vector<int> invalid(static_cast<size_t>(WO * T));
      std::vector<int> ninv(static_cast<size_t>(WO), 0);
      std::vector<float> sa(static_cast<size_t>(WO), 0.f), nvalid(static_cast<size_t>(WO), 0.f);
      for (int64_t ox = 0; ox < WO; ++ox) {
        int nt = 0;
        for (int i = 0; i < KH; ++i) {
          const int64_t iy = oy * s - ph + i * d;
          for (int j = 0; j < KW; ++j) {
            const int64_t ix = ox * s - pw + j * d;
            const int t = i * KW + j;
            uint64_t *dst = &rowbuf[static_cast<size_t>((ox * T + t) * NW)];
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
              for (int64_t k = 0; k < NW; ++k) dst[k] = 0;
              invalid[static_cast<size_t>(ox * T + ninv[ox]++)] = t;
              continue;
            }
            const int64_t off = (n * H + iy) * W + ix;
            const uint64_t *src = &apack[static_cast<size_t>(off * NW)];
            for (int64_t k = 0; k < NW; ++k) dst[k] = src[k];
            sa[ox] += asum[static_cast<size_t>(off)];
            ++nt;
          }
        }
        nvalid[ox] = static_cast<float>(nt * C);
      }
      for (int64_t o0 = 0; o0 < O; o0 += 4) {
        const int nq = static_cast<int>(O - o0 < 4 ? O - o0 : 4);
        for (int64_t ox = 0; ox < WO; ++ox) {
          const uint64_t *ab = &rowbuf[static_cast<size_t>(ox * L)];
          int64_t mism[4];
#ifdef __AVX2__
          if (nq == 4) {
            xor_popcount4(ab, wp + o0 * L, L, mism);
          } else
#endif
          {
            for (int q = 0; q < nq; ++q) mism[q] = xor_popcount(ab, wp + (o0 + q) * L, L);
          }
          const int *inv = &invalid[static_cast<size_t>(ox * T)];
          for (int q = 0; q < nq; ++q) {
            const int64_t o = o0 + q;
            int64_t m = mism[q];
            const int32_t *pc = &wpc[static_cast<size_t>(o * T)];
            for (int r = 0; r < ninv[ox]; ++r) m -= pc[inv[r]];
            const float swa = nvalid[ox] - 2.f * static_cast<float>(m);
            const float aw = wsc[2 * o], bw = wsc[2 * o + 1];
            float res = aw * aa * swa;
            if (ba != 0.f) {
              const float *ws = wsum + o * T;
              float sw = 0.f;
              for (int t = 0; t < T; ++t) sw += ws[t];
              for (int r = 0; r < ninv[ox]; ++r) sw -= ws[inv[r]];
              res += aw * aa * ba * sw;
            }
            if (bw != 0.f) res += bw * aa * sa[ox] + bw * aa * ba * nvalid[ox];
            y[((n * O + o) * HO + oy) * WO + ox] = res;
          }
        }
      }
    }
  }
  return 0;
}
