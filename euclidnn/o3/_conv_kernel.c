/* Fused "uvu" tensor-product convolution on the CPU (private; loaded by euclidnn/o3/_native.py).
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
 *
 * mode 0: g[v] = Σ_{e: dst_e = v} …   (node output, edges visited in dst order: no races)
 * mode 1: x[v] = Σ_{e: src_e = v} …   (node output, edges visited in src order)
 * mode 2: w[r] = Σ_{e: r_e = r} …    (weight-row output, edges visited in r order)
 * mode 3: y[e] = …                    (edge output)
 *
 * r_e = wrow[e] lets several edges share one row of weights (both directions of a pair share
 * their radial filter); wrow = NULL means r_e = e. order/ptr list the edges grouped by the
 * index of the output row (dst, src or r), CSR-style; mode 3 ignores them.
 *
 * The output array must be zeroed by the caller. Entries are int64 rows (xo, j, go, wo, U).
 * Atom features x and g are in the "ir_mul" layout (within a term of multiplicity U and
 * dimension d, component i of channel u sits at i·U + u), so the channel loop is contiguous in
 * x, w and g and vectorizes; the caller permutes from and to e3nn's layout.
 */
#include <stdint.h>

#define ENTRY 5

#define DEFINE_KERNEL(NAME, T)                                                                     \
    void NAME(int mode, int64_t n_nodes, int64_t n_edges, const int64_t *src, const int64_t *dst,  \
              const int64_t *order, const int64_t *ptr, const int64_t *wrow, T *x, T *y, T *w,     \
              T *g, int64_t xn,                                                                    \
              int64_t yn, int64_t wn, int64_t gn, const int64_t *entries, const T *coef,           \
              int64_t n_entries, int threads) {                                                    \
        if (mode == 0 || mode == 1) {                                                              \
            _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
            for (int64_t v = 0; v < n_nodes; v++) {                                                \
                /* mode 0: out = g[v], a = x[src]; mode 1: out = x[v], a = g[dst] */              \
                T *restrict out = (mode == 0 ? g + v * gn : x + v * xn);                           \
                const int64_t out_col = (mode == 0 ? 2 : 0), in_col = (mode == 0 ? 0 : 2);         \
                for (int64_t q = ptr[v]; q < ptr[v + 1]; q++) {                                    \
                    const int64_t e = order[q];                                                    \
                    const int64_t r = wrow ? wrow[e] : e;                                          \
                    const T *restrict ye = y + e * yn, *restrict we = w + r * wn;                  \
                    const T *restrict ae = (mode == 0 ? x + src[e] * xn : g + dst[e] * gn);        \
                    for (int64_t n = 0; n < n_entries; n++) {                                      \
                        const int64_t *en = entries + n * ENTRY;                                   \
                        const T cy = coef[n] * ye[en[1]];                                          \
                        const T *restrict ap = ae + en[in_col], *restrict wp = we + en[3];         \
                        T *restrict op = out + en[out_col];                                        \
                        const int64_t U = en[4];                                                   \
                        _Pragma("omp simd")                                                        \
                        for (int64_t u = 0; u < U; u++) op[u] += cy * wp[u] * ap[u];               \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        } else if (mode == 2) {                                                                    \
            _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
            for (int64_t r = 0; r < n_nodes; r++) {                                                \
                T *restrict wr = w + r * wn;                                                       \
                for (int64_t q = (order ? ptr[r] : r); q < (order ? ptr[r + 1] : r + 1); q++) {    \
                    const int64_t e = order ? order[q] : q;                                        \
                    const T *restrict xe = x + src[e] * xn, *restrict ge = g + dst[e] * gn;        \
                    for (int64_t n = 0; n < n_entries; n++) {                                      \
                        const int64_t *en = entries + n * ENTRY;                                   \
                        const T cy = coef[n] * y[e * yn + en[1]];                                  \
                        const T *restrict xp = xe + en[0], *restrict gp = ge + en[2];              \
                        T *restrict wp = wr + en[3];                                               \
                        const int64_t U = en[4];                                                   \
                        _Pragma("omp simd")                                                        \
                        for (int64_t u = 0; u < U; u++) wp[u] += cy * xp[u] * gp[u];               \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
            for (int64_t e = 0; e < n_edges; e++) {                                                \
                const T *restrict xe = x + src[e] * xn, *restrict ge = g + dst[e] * gn;            \
                const T *restrict we = w + (wrow ? wrow[e] : e) * wn;                              \
                for (int64_t n = 0; n < n_entries; n++) {                                          \
                    const int64_t *en = entries + n * ENTRY;                                       \
                    const T *restrict xp = xe + en[0], *restrict gp = ge + en[2];                  \
                    const T *restrict wp = we + en[3];                                             \
                    const int64_t U = en[4];                                                       \
                    T acc = 0;                                                                     \
                    _Pragma("omp simd reduction(+ : acc)")                                         \
                    for (int64_t u = 0; u < U; u++) acc += wp[u] * xp[u] * gp[u];                  \
                    y[e * yn + en[1]] += coef[n] * acc;                                            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KERNEL(uvu_conv_f32, float)
DEFINE_KERNEL(uvu_conv_f64, double)

/* Both gradients of a convolution whose y and w are given (modes 1 then 2) in one call: the
 * backward pass of a hand-written force routine calls this once per layer. */
#define DEFINE_BACKWARD(NAME, KERNEL, T)                                                          \
    void NAME(int64_t n_src, int64_t n_rows, int64_t n_edges, const int64_t *src,                 \
              const int64_t *dst, const int64_t *order_src, const int64_t *ptr_src,               \
              const int64_t *order_row, const int64_t *ptr_row, const int64_t *wrow, T *x, T *gx,   \
              T *y, T *w, T *gw, T *g, int64_t xn, int64_t yn, int64_t wn, int64_t gn,              \
              const int64_t *entries, const T *coef, int64_t n_entries, int threads) {             \
        KERNEL(1, n_src, n_edges, src, dst, order_src, ptr_src, wrow, gx, y, w, g, xn, yn, wn, gn, \
               entries, coef, n_entries, threads);                                                 \
        KERNEL(2, n_rows, n_edges, src, dst, order_row, ptr_row, wrow, x, y, gw, g, xn, yn, wn,     \
               gn, entries, coef, n_entries, threads);                                             \
    }

DEFINE_BACKWARD(uvu_conv_backward_f32, uvu_conv_f32, float)
DEFINE_BACKWARD(uvu_conv_backward_f64, uvu_conv_f64, double)
