// Attention kernels of kernels.cu (included there, after the helpers they use: Num, block_sum,
// block_max, the row teams, mask_row, splitmix, MASKED_SCORE): the fused attention's two row kernels.
// Kept apart to keep each file readable in one sitting.
#pragma once

// ---------------------------------------------------------------- fused attention (one block per score row)
// Rows of [pairs, S, T] scores, pair = b·heads + n. The twin of the CPU op in src/ops/attention.rs:
// z = (s + bias)·scale·m + MASKED·(1 − m) (the bias already divided by scale on the host), P = softmax(z),
// and dropout with the CPU's counter hash over the flat index row·T + j.
__device__ __forceinline__ bool dropped(uint64_t mixed_seed, uint64_t threshold, size_t i) {
  return threshold > 0 && (splitmix(mixed_seed ^ (i * 0xD6E8FEB86659FD93ull)) >> 11) < threshold;
}


// The masked, scaled, biased score z of column i (see above).
template <typename T, typename A>
__device__ __forceinline__ A attn_score(const T* sr, const T* mr, const double* br, int i, double scale) {
  const A mv = Num<T>::to(mr[i]);
  const A sv = Num<T>::to(sr[i]) + (br ? A(br[i]) : A(0));
  return sv * A(scale) * mv + A(MASKED_SCORE) * (A(1) - mv);
}

// Writes P (and P') of column i from its unnormalised e = exp(z − max).
template <typename T, typename A>
__device__ __forceinline__ void attn_store(T* sr, T* pd, size_t row, int t, int i, A e, A inv, uint64_t mixed_seed,
                                           uint64_t threshold, double keep_scale, int mode) {
  const T p = Num<T>::of(e * inv);
  // P' from the stored (rounded) P, as the backward pass recomputes it when P' was not kept.
  const T pdrop = dropped(mixed_seed, threshold, row * t + i) ? Num<T>::of(A(0)) : Num<T>::of(Num<T>::to(p) * A(keep_scale));
  if (mode == 3) {
    sr[i] = p;
    pd[row * t + i] = pdrop;
  } else {
    sr[i] = mode == 1 ? pdrop : p;
  }
}

// mode 0: P over the scores; 1: P' (dropped P) over the scores; 3: P over the scores and P' into pd.
// One team R (a block or a warp) per row, `rows` rows. A row of up to R::CACHE × the team's
// threads (8 × 1,024 keys for a block, 32 × 32 for a warp) is read and exponentiated once, from
// registers; longer ones take three passes over memory.
template <typename T, typename R>
__device__ void attn_probs_fwd(T* sc, T* pd, const T* m, const double* bias, int bias_rows, int heads, int s_len, int t,
                               int mask_batches, double scale, uint64_t mixed_seed, uint64_t threshold, double keep_scale,
                               int mode, size_t rows) {
  typedef typename Num<T>::A A;
  const size_t row = R::row();
  if (row >= rows) return;  // a whole warp: no barrier of the others waits for it
  const int first = R::first(), stride = R::stride();
  T* sr = sc + row * t;
  const T* mr = m + mask_row(row, heads, s_len, mask_batches) * t;
  const double* br = bias_rows > 0 ? bias + (bias_rows == 1 ? 0 : row / ((size_t)heads * s_len)) * t : nullptr;
  // Every thread of the team takes the same branch (t and the team size are uniform), so the
  // reductions match up. Each thread reads and then overwrites only its own elements: in place is safe.
  if (t <= R::CACHE * stride) {
    A z[R::CACHE];
    A mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < R::CACHE; ++k) {
      const int i = first + k * stride;
      z[k] = i < t ? attn_score<T, A>(sr, mr, br, i, scale) : A(-INFINITY);
      mx = max(mx, z[k]);
    }
    mx = R::reduce_max(mx);
    A sum = 0;
#pragma unroll
    for (int k = 0; k < R::CACHE; ++k) {
      const int i = first + k * stride;
      z[k] = i < t ? exp(z[k] - mx) : A(0);
      sum += z[k];
    }
    const A inv = A(1) / R::reduce_sum(sum);
#pragma unroll
    for (int k = 0; k < R::CACHE; ++k) {
      const int i = first + k * stride;
      if (i < t) attn_store<T, A>(sr, pd, row, t, i, z[k], inv, mixed_seed, threshold, keep_scale, mode);
    }
    return;
  }
  A mx = -INFINITY;
  for (int i = first; i < t; i += stride) mx = max(mx, attn_score<T, A>(sr, mr, br, i, scale));
  mx = R::reduce_max(mx);
  A sum = 0;
  for (int i = first; i < t; i += stride) sum += exp(attn_score<T, A>(sr, mr, br, i, scale) - mx);
  const A inv = A(1) / R::reduce_sum(sum);
  for (int i = first; i < t; i += stride) {
    const A e = exp(attn_score<T, A>(sr, mr, br, i, scale) - mx);
    attn_store<T, A>(sr, pd, row, t, i, e, inv, mixed_seed, threshold, keep_scale, mode);
  }
}

// dS over dP' (the gradient of the dropped probabilities P', which the forward pass kept in `pd`;
// nullptr without dropout, where P' = P): with g = dP'·keep·[kept], P ⊙ g = dP' ⊙ P', so
// dS = (dP' ⊙ P' − P · Σ dP' ⊙ P')·scale·m, and no dropout hash is recomputed.
template <typename T, typename R>
__device__ void attn_probs_bwd(T* dp, const T* p, const T* pd, const T* m, int heads, int s_len, int t, int mask_batches,
                               double scale, size_t rows) {
  typedef typename Num<T>::A A;
  const size_t row = R::row();
  if (row >= rows) return;
  const int first = R::first(), stride = R::stride();
  T* dr = dp + row * t;
  const T* pr = p + row * t;
  const T* qr = (pd ? pd : p) + row * t;
  const T* mr = m + mask_row(row, heads, s_len, mask_batches) * t;
  // Each thread reads and then overwrites only its own elements: in place is safe.
  if (t <= R::CACHE * stride) {
    A gq[R::CACHE];  // dP' ⊙ P', read once
    A dot = 0;
#pragma unroll
    for (int k = 0; k < R::CACHE; ++k) {
      const int i = first + k * stride;
      gq[k] = i < t ? Num<T>::to(dr[i]) * Num<T>::to(qr[i]) : A(0);
      dot += gq[k];
    }
    dot = R::reduce_sum(dot);
#pragma unroll
    for (int k = 0; k < R::CACHE; ++k) {
      const int i = first + k * stride;
      if (i < t) dr[i] = Num<T>::of((gq[k] - Num<T>::to(pr[i]) * dot) * Num<T>::to(mr[i]) * A(scale));
    }
    return;
  }
  A dot = 0;
  for (int i = first; i < t; i += stride) dot += Num<T>::to(dr[i]) * Num<T>::to(qr[i]);
  dot = R::reduce_sum(dot);
  for (int i = first; i < t; i += stride) {
    const A g = Num<T>::to(dr[i]) * Num<T>::to(qr[i]) - Num<T>::to(pr[i]) * dot;
    dr[i] = Num<T>::of(g * Num<T>::to(mr[i]) * A(scale));
  }
}
