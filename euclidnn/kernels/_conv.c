/* Fused "uvu" tensor-product convolution on the CPU (loaded by euclidnn/kernels/conv.py, which
 * checks every argument before it calls in here).
 *
 * One quadrilinear form covers the convolution and every derivative of it:
 *
 *   Q(x, y, w, g) = Σ_e Σ_n c_n y[e, j_n] Σ_{u < U_n} w[r_e, wo_n + u] x[src_e, xo_n + u]
 *                                                   · g[dst_e, go_n + u]
 *
 * with one entry n per nonzero Clebsch–Gordan coefficient c_n of every path (path
 * normalization folded in). The convolution is ∂Q/∂g, i.e. messages summed into each
 * destination atom; ∂Q/∂x, ∂Q/∂w and ∂Q/∂y are its gradients, and the gradients of those are
 * again the same four maps, so autograd gets any order of derivative from this one kernel.
 * y = NULL means y ≡ 1 (SchNet's continuous filter: x ⊙ w, one entry of width F).
 *
 * mode 0: g[v] = Σ_{e: dst_e = v} …   (node output, edges visited in dst order: no races)
 * mode 1: x[v] = Σ_{e: src_e = v} …   (node output, edges visited in src order)
 * mode 2: w[r] = Σ_{e: r_e = r} …    (weight-row output, edges visited in r order)
 * mode 3: y[e] = …                    (edge output)
 *
 * r_e = wrow[e] lets several edges share one row of weights (both directions of a pair share
 * their radial filter); wrow = NULL means r_e = e. order/ptr list the edges grouped by the
 * index of the output row (dst, src or r), CSR-style; mode 2 without wrow and mode 3 ignore
 * them. The output array must be zeroed by the caller. Entries are int64 rows
 * (xo, j, go, wo, U). Atom features x and g are in the "ir_mul" layout (within a term of
 * multiplicity U and dimension d, component i of channel u sits at i·U + u), so the channel
 * loop is contiguous in x, w and g and vectorizes; the caller permutes from and to e3nn's
 * layout.
 *
 * The file instantiates itself for float and double: the first pass (T undefined) includes
 * this file again for each type.
 */
#ifndef T

#include <stddef.h>
#include <stdint.h>

#define ENTRY 5 /* int64 values per entry: xo, j, go, wo, U */
/* Multiply-adds (edges × Σ_n U_n) from which a call runs on several threads: below it, opening
 * an OpenMP region costs more than the work, and far more when another process holds a core
 * (a region waits for its slowest thread). */
#define PARALLEL_MIN 65536

#define T float
#define SUFFIX(name) name##_f32
#include "_conv.c"
#undef T
#undef SUFFIX

#define T double
#define SUFFIX(name) name##_f64
#include "_conv.c"

#else /* the body, for one type T */

/* Σ_n over the entries for one edge, accumulated into one output row: out[o_n + u] +=
 * c_n y_e[j_n] w_e[wo_n + u] a[i_n + u], where (i, o) = (xo, go) in mode 0 and (go, xo) in
 * mode 1. */
static void SUFFIX(accumulate_row)(T *restrict out, const T *restrict a, const T *restrict we,
                                   const T *ye, const int64_t *entries, const T *coef,
                                   int64_t n_entries, int in_col, int out_col) {
    for (int64_t n = 0; n < n_entries; n++) {
        const int64_t *en = entries + n * ENTRY;
        const T cy = ye ? coef[n] * ye[en[1]] : coef[n];
        const T *restrict ap = a + en[in_col], *restrict wp = we + en[3];
        T *restrict op = out + en[out_col];
        const int64_t U = en[4];
#pragma omp simd
        for (int64_t u = 0; u < U; u++) op[u] += cy * wp[u] * ap[u];
    }
}

/* modes 0 and 1: one output row per node, its edges in CSR order (no two threads write a row) */
static void SUFFIX(node_mode)(int mode, int64_t n_nodes, const int64_t *src, const int64_t *dst,
                              const int64_t *order, const int64_t *ptr, const int64_t *wrow,
                              T *x, const T *y, const T *w, T *g, int64_t xn, int64_t yn,
                              int64_t wn, int64_t gn, const int64_t *entries, const T *coef,
                              int64_t n_entries, int threads) {
    const int out_col = mode == 0 ? 2 : 0, in_col = mode == 0 ? 0 : 2;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t v = 0; v < n_nodes; v++) {
        T *out = mode == 0 ? g + v * gn : x + v * xn;
        for (int64_t q = ptr[v]; q < ptr[v + 1]; q++) {
            const int64_t e = order[q];
            const int64_t r = wrow ? wrow[e] : e;
            const T *a = mode == 0 ? x + src[e] * xn : g + dst[e] * gn;
            SUFFIX(accumulate_row)(out, a, w + r * wn, y ? y + e * yn : NULL, entries, coef,
                                   n_entries, in_col, out_col);
        }
    }
}

/* mode 2: w[r] += c_n y_e[j_n] x[src_e] ⊙ g[dst_e] for the edges e of row r */
static void SUFFIX(weight_mode)(int64_t n_rows, const int64_t *src, const int64_t *dst,
                                const int64_t *order, const int64_t *ptr, const T *x,
                                const T *y, T *w, const T *g, int64_t xn, int64_t yn, int64_t wn,
                                int64_t gn, const int64_t *entries, const T *coef,
                                int64_t n_entries, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t r = 0; r < n_rows; r++) {
        T *restrict wr = w + r * wn;
        const int64_t first = order ? ptr[r] : r, last = order ? ptr[r + 1] : r + 1;
        for (int64_t q = first; q < last; q++) {
            const int64_t e = order ? order[q] : q;
            const T *restrict xe = x + src[e] * xn, *restrict ge = g + dst[e] * gn;
            for (int64_t n = 0; n < n_entries; n++) {
                const int64_t *en = entries + n * ENTRY;
                const T cy = y ? coef[n] * y[e * yn + en[1]] : coef[n];
                const T *restrict xp = xe + en[0], *restrict gp = ge + en[2];
                T *restrict wp = wr + en[3];
                const int64_t U = en[4];
#pragma omp simd
                for (int64_t u = 0; u < U; u++) wp[u] += cy * xp[u] * gp[u];
            }
        }
    }
}

/* mode 3: y[e, j_n] += c_n Σ_u w[r_e] x[src_e] g[dst_e], one edge per iteration */
static void SUFFIX(edge_mode)(int64_t n_edges, const int64_t *src, const int64_t *dst,
                              const int64_t *wrow, const T *x, T *y, const T *w, const T *g,
                              int64_t xn, int64_t yn, int64_t wn, int64_t gn,
                              const int64_t *entries, const T *coef, int64_t n_entries,
                              int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t e = 0; e < n_edges; e++) {
        const T *restrict xe = x + src[e] * xn, *restrict ge = g + dst[e] * gn;
        const T *restrict we = w + (wrow ? wrow[e] : e) * wn;
        for (int64_t n = 0; n < n_entries; n++) {
            const int64_t *en = entries + n * ENTRY;
            const T *restrict xp = xe + en[0], *restrict gp = ge + en[2];
            const T *restrict wp = we + en[3];
            const int64_t U = en[4];
            T acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t u = 0; u < U; u++) acc += wp[u] * xp[u] * gp[u];
            y[e * yn + en[1]] += coef[n] * acc;
        }
    }
}

/* One partial derivative of Q (see the top of the file): n_out rows of the output slot
 * (nodes in modes 0 and 1, weight rows in mode 2, edges in mode 3). */
void SUFFIX(uvu_conv)(int mode, int64_t n_out, int64_t n_edges, const int64_t *src,
                      const int64_t *dst, const int64_t *order, const int64_t *ptr,
                      const int64_t *wrow, T *x, T *y, T *w, T *g, int64_t xn, int64_t yn,
                      int64_t wn, int64_t gn, const int64_t *entries, const T *coef,
                      int64_t n_entries, int threads) {
    int64_t work = 0;
    for (int64_t n = 0; n < n_entries; n++) work += entries[n * ENTRY + 4];
    if (work * n_edges < PARALLEL_MIN) threads = 1;
    if (mode == 0 || mode == 1)
        SUFFIX(node_mode)(mode, n_out, src, dst, order, ptr, wrow, x, y, w, g, xn, yn, wn, gn,
                          entries, coef, n_entries, threads);
    else if (mode == 2)
        SUFFIX(weight_mode)(n_out, src, dst, order, ptr, x, y, w, g, xn, yn, wn, gn, entries,
                            coef, n_entries, threads);
    else
        SUFFIX(edge_mode)(n_edges, src, dst, wrow, x, y, w, g, xn, yn, wn, gn, entries, coef,
                          n_entries, threads);
}

#endif
