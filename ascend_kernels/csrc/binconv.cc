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
//
// Steps (one OpenMP parallel region): pack the activation signs (64 channels a word), gather the
// KH*KW taps of every output position into one contiguous row of words (0 for padded taps), then
// per (image, block of output channels) count mismatches against the weights and write y.
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "kernel_threads.h"

static inline int popc64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(v);
#else
  int c = 0;
  while (v) { v &= v - 1; ++c; }
  return c;
#endif
}

#ifdef __AVX2__
// Mismatch counts of one position's L activation words a[] against 4*NV + S output channels.
// Weights are transposed (wt[k][o], o contiguous), so each 64-bit lane of a vector belongs to one
// output channel: the nibble-LUT byte counts reduce to per-channel counts with one vpsadbw per
// vector, no horizontal sums. The S channels after the vectors go through scalar POPCNT in the
// same loop (integer ALUs the vector code leaves idle; ~1.1x on this CPU). out[] gets the counts.
template <int NV, int S>
static inline void xor_popcount_lanes(const uint64_t *a, const uint64_t *wt, int64_t ostride, int64_t L,
                                      int32_t *out) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  // low halves of the 64-bit sums
  __m128i tot[NV];
  for (int v = 0; v < NV; ++v) tot[v] = _mm_setzero_si128();
  std::array<int64_t, S> sc{};
  for (int64_t k0 = 0; k0 < L; k0 += 31) {  // a byte counter takes <= 8 per step: flush every 31
    const int64_t k1 = (k0 + 31 < L) ? k0 + 31 : L;
    __m256i by[NV];
    for (int v = 0; v < NV; ++v) by[v] = zero;
    for (int64_t k = k0; k < k1; ++k) {
      const uint64_t *wk = wt + k * ostride;
      const uint64_t ak = a[k];
      const __m256i av = _mm256_set1_epi64x(static_cast<long long>(ak));
      for (int v = 0; v < NV; ++v) {
        const __m256i x = _mm256_xor_si256(av, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(wk + 4 * v)));
        const __m256i lo = _mm256_and_si256(x, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
        by[v] = _mm256_add_epi8(by[v], _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi)));
      }
      for (int j = 0; j < S; ++j) sc[j] += popc64(ak ^ wk[4 * NV + j]);
    }
    for (int v = 0; v < NV; ++v)
      tot[v] = _mm_add_epi32(tot[v], _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_sad_epu8(by[v], zero), even)));
  }
  for (int v = 0; v < NV; ++v) _mm_storeu_si128(reinterpret_cast<__m128i *>(out + 4 * v), tot[v]);
  for (int j = 0; j < S; ++j) out[4 * NV + j] = static_cast<int32_t>(sc[j]);
}

// Signs of channels [c0, c0 + 32) of one image (P positions per channel plane, planes contiguous,
// read in memory order) into the 32-bit half c0/32 of every position's words. One compare +
// movemask per 8 positions of a channel gives a byte; with the 32 channel bytes of a block in one
// vector, byte-wise shifts + movemask_epi8 read position j's 32 channel bits at once.
static void pack_channels_avx2(const float *x, int64_t C, int64_t P, int64_t NW, float ba, int64_t c0,
                               uint8_t *bytes, uint64_t *apack) {
  const __m256 thr = _mm256_set1_ps(ba);
  const int64_t nblk = (P + 7) / 8, full = P / 8;
  const int rem = static_cast<int>(P - full * 8);
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (int cc = 0; cc < 32; ++cc) {
    const int64_t c = c0 + cc;
    if (c >= C) {
      for (int64_t b = 0; b < nblk; ++b) bytes[b * 32 + cc] = 0;
      continue;
    }
    const float *src = x + c * P;
    for (int64_t b = 0; b < full; ++b)
      bytes[b * 32 + cc] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(src + b * 8), thr, _CMP_GE_OQ)));
    if (rem)
      bytes[full * 32 + cc] = static_cast<uint8_t>(
          _mm256_movemask_ps(_mm256_cmp_ps(_mm256_maskload_ps(src + full * 8, tail), thr, _CMP_GE_OQ)));
  }
  uint32_t *half = reinterpret_cast<uint32_t *>(apack) + c0 / 32;  // little endian: low half first
  for (int64_t b = 0; b < nblk; ++b) {
    const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bytes + b * 32));
    const int nj = static_cast<int>(b < full ? 8 : rem);
    for (int j = 0; j < nj; ++j)
      half[(b * 8 + j) * NW * 2] = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_sll_epi16(vb, _mm_cvtsi32_si128(7 - j))));
  }
}
#else
// sum_k popcount(a[k] ^ b[k])
static inline int64_t xor_popcount(const uint64_t *a, const uint64_t *b, int64_t L) {
  int64_t r = 0;
  for (int64_t k = 0; k < L; ++k) r += popc64(a[k] ^ b[k]);
  return r;
}

// Signs of channels [64 wd, 64 wd + 64) of one image into word wd of every position.
static void pack_channels_scalar(const float *x, int64_t C, int64_t P, int64_t NW, float ba, int64_t wd,
                                 uint64_t *apack) {
  const int64_t c0 = wd * 64, c1 = (c0 + 64 < C) ? c0 + 64 : C;
  for (int64_t c = c0; c < c1; ++c) {
    const float *src = x + c * P;
    for (int64_t p = 0; p < P; ++p) apack[p * NW + wd] |= static_cast<uint64_t>(src[p] >= ba) << (c - c0);
  }
}
#endif

struct Workspace {
  std::vector<uint64_t> apack, cols, wt;
  std::vector<float> asum, sa, wst, coef;
  std::vector<int32_t> wpc;
};

template <class T>
static T *grow(std::vector<T> &v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

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
  const int64_t P = H * W, PO = HO * WO, L = T * NW;
  const int64_t OP = (O + 3) / 4 * 4;  // channels padded with zero words to a multiple of 4
#ifdef __AVX2__
  constexpr int kVec = 6, kScalar = 4;  // per block: 6 vectors of 4 channels + 4 scalar channels
#else
  constexpr int kVec = 1, kScalar = 0;
#endif
  constexpr int64_t kBlock = 4 * kVec + kScalar;  // a multiple of 4 (OP is)
  const int64_t nblocks = (OP + kBlock - 1) / kBlock;

  // Output positions: padded taps (skipped; counted as popcount(w) mismatches in the gathered
  // zero words, removed below with per-(tap, o) weight popcounts, LCE-style) and valid bit counts.
  std::vector<int> ninv(static_cast<size_t>(PO), 0), invalid(static_cast<size_t>(PO * T));
  std::vector<float> nvalid(static_cast<size_t>(PO));
  std::vector<int64_t> border;
  for (int64_t oy = 0; oy < HO; ++oy)
    for (int64_t ox = 0; ox < WO; ++ox) {
      const int64_t po = oy * WO + ox;
      for (int i = 0; i < KH; ++i)
        for (int j = 0; j < KW; ++j) {
          const int64_t iy = oy * s - ph + i * d, ix = ox * s - pw + j * d;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) invalid[static_cast<size_t>(po * T + ninv[po]++)] = i * KW + j;
        }
      nvalid[static_cast<size_t>(po)] = static_cast<float>((T - ninv[po]) * C);
      if (ninv[po]) border.push_back(po);
    }

  // Work buffers live per calling thread and only grow, so repeated calls do not pay for fresh
  // pages; each is fully overwritten below (or zeroed where only partly written). Buffers above
  // 64 MiB are released after the call.
  thread_local Workspace ws;
  uint64_t *apack = grow(ws.apack, N * P * NW);
  float *asum = grow(ws.asum, N * P), *sa = grow(ws.sa, N * PO);
  uint64_t *cols = grow(ws.cols, N * PO * L);
  uint64_t *wt = grow(ws.wt, L * OP);  // wt[k][o]
  int32_t *wpc = grow(ws.wpc, T * OP);  // wpc[t][o] = popcount of w words
  float *wst = grow(ws.wst, T * OP);    // wst[t][o] = sum_c sw
  float *coef = grow(ws.coef, 5 * OP);  // aw*aa, aw*aa*ba, bw*aa, bw*aa*ba, sum_t wst
  std::memset(wt, 0, static_cast<size_t>(L * OP) * sizeof(uint64_t));  // channels >= O stay 0
  std::memset(wpc, 0, static_cast<size_t>(T * OP) * sizeof(int32_t));
  std::memset(wst, 0, static_cast<size_t>(T * OP) * sizeof(float));
  std::memset(coef, 0, static_cast<size_t>(5 * OP) * sizeof(float));
#ifndef __AVX2__
  std::memset(apack, 0, static_cast<size_t>(N * P * NW) * sizeof(uint64_t));  // scalar packing ORs bits in
#endif

  const int nt = team_size();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    record_team();
    // weights: transposed words, per-tap popcounts and sums, output coefficients
#pragma omp for schedule(static) nowait
    for (int64_t o = 0; o < O; ++o) {
      const float aw = wsc[2 * o], bw = wsc[2 * o + 1];
      coef[static_cast<size_t>(o)] = aw * aa;
      coef[static_cast<size_t>(OP + o)] = aw * aa * ba;
      coef[static_cast<size_t>(2 * OP + o)] = bw * aa;
      coef[static_cast<size_t>(3 * OP + o)] = bw * aa * ba;
      for (int64_t t = 0; t < T; ++t) {
        int c = 0;
        for (int64_t k = 0; k < NW; ++k) {
          const uint64_t v = wp[(o * T + t) * NW + k];
          wt[static_cast<size_t>((t * NW + k) * OP + o)] = v;
          c += popc64(v);
        }
        wpc[static_cast<size_t>(t * OP + o)] = c;
        wst[static_cast<size_t>(t * OP + o)] = wsum[o * T + t];
        coef[static_cast<size_t>(4 * OP + o)] += wsum[o * T + t];
      }
    }
    // 1) activation signs -> apack[n][p][NW]
#ifdef __AVX2__
    std::vector<uint8_t> bytes(static_cast<size_t>((P + 7) / 8 * 32));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < 2 * NW; ++h)
        pack_channels_avx2(x + n * C * P, C, P, NW, ba, h * 32, bytes.data(), &apack[static_cast<size_t>(n * P * NW)]);
#else
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t wd = 0; wd < NW; ++wd)
        pack_channels_scalar(x + n * C * P, C, P, NW, ba, wd, &apack[static_cast<size_t>(n * P * NW)]);
#endif
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N * P; ++i) {
      int cnt = 0;
      for (int64_t wd = 0; wd < NW; ++wd) cnt += popc64(apack[static_cast<size_t>(i * NW + wd)]);
      asum[static_cast<size_t>(i)] = static_cast<float>(2 * cnt - C);
    }
    // 2) gather: cols[n][po][t][k] (0 for padded taps), sa[n][po] = sum of valid tap sign sums
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t oy = 0; oy < HO; ++oy)
        for (int64_t ox = 0; ox < WO; ++ox) {
          const int64_t po = oy * WO + ox;
          uint64_t *dst = &cols[static_cast<size_t>((n * PO + po) * L)];
          float acc = 0.f;
          for (int i = 0; i < KH; ++i) {
            const int64_t iy = oy * s - ph + i * d;
            for (int j = 0; j < KW; ++j, dst += NW) {
              const int64_t ix = ox * s - pw + j * d;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                std::memset(dst, 0, static_cast<size_t>(NW) * sizeof(uint64_t));
                continue;
              }
              const int64_t off = n * P + iy * W + ix;
              std::memcpy(dst, &apack[static_cast<size_t>(off * NW)], static_cast<size_t>(NW) * sizeof(uint64_t));
              acc += asum[static_cast<size_t>(off)];
            }
          }
          sa[static_cast<size_t>(n * PO + po)] = acc;
        }
    // 3) per (image, channel block): mismatch counts -> y (contiguous output planes)
    std::vector<int32_t> cnt(static_cast<size_t>(PO * kBlock));
    std::vector<float> sw(static_cast<size_t>(PO * kBlock));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t o0 = b * kBlock, nc = (OP - o0 < kBlock) ? OP - o0 : kBlock;
        for (int64_t po = 0; po < PO; ++po) {
          const uint64_t *col = &cols[static_cast<size_t>((n * PO + po) * L)];
          int32_t *out = &cnt[static_cast<size_t>(po * nc)];
#ifdef __AVX2__
          if (nc == kBlock) {
            xor_popcount_lanes<kVec, kScalar>(col, wt + o0, OP, L, out);
          } else {
            for (int64_t q = 0; q < nc; q += 4) xor_popcount_lanes<1, 0>(col, wt + o0 + q, OP, L, out + q);
          }
#else
          for (int64_t q = 0; q < nc; ++q)
            out[q] = o0 + q < O ? static_cast<int32_t>(xor_popcount(col, wp + (o0 + q) * L, L)) : 0;
#endif
        }
        // valid-tap weight sums: only the aw*aa*ba term uses them (sw stays 0 when ba == 0)
        if (ba != 0.f)
          for (int64_t po = 0; po < PO; ++po)
            for (int64_t q = 0; q < nc; ++q) sw[static_cast<size_t>(po * nc + q)] = coef[static_cast<size_t>(4 * OP + o0 + q)];
        for (const int64_t po : border)
          for (int r = 0; r < ninv[po]; ++r) {
            const int64_t t = invalid[static_cast<size_t>(po * T + r)];
            for (int64_t q = 0; q < nc; ++q) cnt[static_cast<size_t>(po * nc + q)] -= wpc[static_cast<size_t>(t * OP + o0 + q)];
            if (ba != 0.f)
              for (int64_t q = 0; q < nc; ++q) sw[static_cast<size_t>(po * nc + q)] -= wst[static_cast<size_t>(t * OP + o0 + q)];
          }
        for (int64_t q = 0; q < nc && o0 + q < O; ++q) {
          const int64_t o = o0 + q;
          const float c1 = coef[static_cast<size_t>(o)], c2 = coef[static_cast<size_t>(OP + o)];
          const float c3 = coef[static_cast<size_t>(2 * OP + o)], c4 = coef[static_cast<size_t>(3 * OP + o)];
          const float *san = &sa[static_cast<size_t>(n * PO)];
          float *yo = y + (n * O + o) * PO;
          for (int64_t po = 0; po < PO; ++po) {
            const float m = static_cast<float>(cnt[static_cast<size_t>(po * nc + q)]);
            yo[po] = c1 * (nvalid[po] - 2.f * m) + c2 * sw[static_cast<size_t>(po * nc + q)] + c3 * san[po] +
                     c4 * nvalid[po];
          }
        }
      }
  }
  if (ws.cols.size() * sizeof(uint64_t) > (size_t{64} << 20)) ws = Workspace();
  return 0;
}
