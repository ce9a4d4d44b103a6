/* Fused "uvu" tensor-product convolution on the CPU (private; loaded by euclidnn/o3/_native.py).
 *
 * One quadrilinear form covers the convolution and every derivative of it:
 *
 *   Q(x, y, w, g) = Σ_e Σ_n c_n y[e, j_n] Σ_{u < U_n} w[e, wo_n + u] x[src_e, xo_n + u·xs_n]
 *                                                   · g[dst_e, go_n + u·gs_n]
 *
 * with one entry n per nonzero Clebsch–Gordan coefficient c_n of every path (path
 * normalization folded in). The convolution is ∂Q/∂g, i.e. messages summed into each
 * destination atom; ∂Q/∂x, ∂Q/∂w and ∂Q/∂y are its gradients, and the gradients of those are
 * again the same four maps, so autograd gets any order of derivative from this one kernel.
 *
 * mode 0: g[v] = Σ_{e: dst_e = v} …   (node output, edges visited in dst order: no races)
 * mode 1: x[v] = Σ_{e: src_e = v} …   (node output, edges visited in src order)
 * mode 2: w[e] = …                    (edge output)
 * mode 3: y[e] = …                    (edge output)
 *
 * The output array must be zeroed by the caller. Entries are int64 rows
 * (xo, xs, j, go, gs, wo, U). Features are read in e3nn's layout (u-major within a term), so
 * nothing is permuted before or after.
 */
#include <stdint.h>

#define ENTRY 7

#define DEFINE_KERNEL(NAME, T)                                                                     \
    void NAME(int mode, int64_t n_nodes, int64_t n_edges, const int64_t *src, const int64_t *dst,  \
              const int64_t *order, const int64_t *ptr, T *x, T *y, T *w, T *g, int64_t xn,        \
              int64_t yn, int64_t wn, int64_t gn, const int64_t *entries, const T *coef,           \
              int64_t n_entries, int threads) {                                                    \
        if (mode == 0 || mode == 1) {                                                              \
            _Pragma("omp parallel for schedule(dynamic, 8) num_threads(threads)")                  \
            for (int64_t v = 0; v < n_nodes; v++) {                                                \
                for (int64_t q = ptr[v]; q < ptr[v + 1]; q++) {                                    \
                    const int64_t e = order[q];                                                    \
                    const T *ye = y + e * yn, *we = w + e * wn;                                    \
                    if (mode == 0) {                                                               \
                        const T *xe = x + src[e] * xn;                                             \
                        T *ge = g + v * gn;                                                        \
                        for (int64_t n = 0; n < n_entries; n++) {                                  \
                            const int64_t *en = entries + n * ENTRY;                               \
                            const T cy = coef[n] * ye[en[2]];                                      \
                            const T *xp = xe + en[0], *wp = we + en[5];                            \
                            T *gp = ge + en[3];                                                    \
                            const int64_t xs = en[1], gs = en[4], U = en[6];                       \
                            _Pragma("omp simd")                                                    \
                            for (int64_t u = 0; u < U; u++) gp[u * gs] += cy * wp[u] * xp[u * xs]; \
                        }                                                                          \
                    } else {                                                                       \
                        const T *ge = g + dst[e] * gn;                                             \
                        T *xe = x + v * xn;                                                        \
                        for (int64_t n = 0; n < n_entries; n++) {                                  \
                            const int64_t *en = entries + n * ENTRY;                               \
                            const T cy = coef[n] * ye[en[2]];                                      \
                            T *xp = xe + en[0];                                                    \
                            const T *wp = we + en[5], *gp = ge + en[3];                            \
                            const int64_t xs = en[1], gs = en[4], U = en[6];                       \
                            _Pragma("omp simd")                                                    \
                            for (int64_t u = 0; u < U; u++) xp[u * xs] += cy * wp[u] * gp[u * gs]; \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
            for (int64_t e = 0; e < n_edges; e++) {                                                \
                const T *xe = x + src[e] * xn, *ge = g + dst[e] * gn;                              \
                for (int64_t n = 0; n < n_entries; n++) {                                          \
                    const int64_t *en = entries + n * ENTRY;                                       \
                    const T *xp = xe + en[0], *gp = ge + en[3];                                    \
                    const int64_t xs = en[1], gs = en[4], U = en[6];                               \
                    if (mode == 2) {                                                               \
                        const T cy = coef[n] * y[e * yn + en[2]];                                  \
                        T *wp = w + e * wn + en[5];                                                \
                        _Pragma("omp simd")                                                        \
                        for (int64_t u = 0; u < U; u++) wp[u] += cy * xp[u * xs] * gp[u * gs];     \
                    } else {                                                                       \
                        const T *wp = w + e * wn + en[5];                                          \
                        T acc = 0;                                                                 \
                        _Pragma("omp simd reduction(+ : acc)")                                     \
                        for (int64_t u = 0; u < U; u++) acc += wp[u] * xp[u * xs] * gp[u * gs];    \
                        y[e * yn + en[2]] += coef[n] * acc;                                        \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_KERNEL(uvu_conv_f32, float)
DEFINE_KERNEL(uvu_conv_f64, double)
