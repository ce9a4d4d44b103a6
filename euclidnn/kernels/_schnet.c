/* SchNet energy and forces in one C call (loaded by euclidnn/kernels/schnet.py, which checks
 * every argument before it calls in here).
 *
 * The same function and the same hand-written chain rule as SchNet.energy_and_forces in
 * schnet.py (the equations are there), for inference. On small molecules a PyTorch call is
 * mostly per-operation overhead (~150 tensor operations for a 9-atom molecule); here the whole
 * call is one C function. Matrix products go to the BLAS PyTorch itself uses (its sgemm_ /
 * dgemm_, passed in as a function pointer); elementwise loops vectorize through glibc's vector
 * math (libmvec); edge loops visit edges in CSR order (no races, any thread count).
 *
 * The file instantiates itself for float and double: the first pass (T undefined) sets the
 * type macros and includes this file again for the body.
 */
#ifndef T

#define __FAST_MATH__ 1 /* only so that math.h declares libmvec's vector exp and log1p */
#include <math.h>
#undef __FAST_MATH__
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#define LN2 0.693147180559945309417
#define PARALLEL_MIN 16384 /* elements of work from which a loop runs on several threads */
#define PRAGMA(x) _Pragma(#x)
#define PARALLEL_FOR(work)                                                                        \
    PRAGMA(omp parallel for schedule(static) num_threads(threads) if ((work) >= PARALLEL_MIN))

/* A per-thread workspace kept from call to call: a fresh allocation of tens of MB (a few hundred
 * atoms) costs page faults on every call. Reallocated when a call needs more, or under 1/4. */
static void *workspace(size_t bytes) {
    static _Thread_local void *buffer = NULL;
    static _Thread_local size_t capacity = 0;
    if (bytes > capacity || bytes < capacity / 4) {
        free(buffer);
        buffer = malloc(bytes);
        capacity = buffer ? bytes : 0;
    }
    return buffer;
}

#define T float
#define SUFFIX(name) name##_f32
#define EXP expf
#define LOG1P log1pf
#define COS cosf
#define SIN sinf
#include "_schnet.c"
#undef T
#undef SUFFIX
#undef EXP
#undef LOG1P
#undef COS
#undef SIN

#define T double
#define SUFFIX(name) name##_f64
#define EXP exp
#define LOG1P log1p
#define COS cos
#define SIN sin
#include "_schnet.c"

#else /* the body, for one type T */

/* Fortran BLAS ?gemm_. Sizes are passed as pointers to int64: on little-endian machines that
 * reads the same for 32-bit (LP64) and 64-bit (ILP64) integer interfaces. */
typedef void SUFFIX(gemm_t)(const char *, const char *, const int64_t *, const int64_t *,
                            const int64_t *, const T *, const T *, const int64_t *, const T *,
                            const int64_t *, const T *, T *, const int64_t *);

/* C[m, n] = op(A) op(B) + beta C in row-major storage (op(X) = Xᵀ where the flag is 'T', A is
 * [m, k] before op, B [k, n]). Column-major BLAS computes the transpose: Cᵀ = op(B)ᵀ op(A)ᵀ. */
static void SUFFIX(mm)(SUFFIX(gemm_t) *gemm, char ta, char tb, int64_t m, int64_t n, int64_t k,
                       const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *c,
                       int64_t ldc) {
    if (m == 0 || n == 0) return;
    const T one = 1;
    gemm(&tb, &ta, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
}

/* y = x Wᵀ + b (nn.Linear): x [m, n_in] (row stride ldx), W [n_out, n_in], y [m, n_out]
 * (row stride ldy); b may be NULL */
static void SUFFIX(linear)(SUFFIX(gemm_t) *gemm, int64_t m, int64_t n_out, int64_t n_in,
                           const T *x, int64_t ldx, const T *w, const T *b, T *y, int64_t ldy) {
    for (int64_t i = 0; i < m; i++) {
        if (b) memcpy(y + i * ldy, b, n_out * sizeof(T));
        else memset(y + i * ldy, 0, n_out * sizeof(T));
    }
    SUFFIX(mm)(gemm, 'N', 'T', m, n_out, n_in, x, ldx, w, n_in, 1, y, ldy);
}

/* s = ssp(x) = softplus(x) − ln 2 (PyTorch's softplus: x above 20), g = sigmoid(x) = ssp'(x).
 * The exponents are clamped at ±80 (changing the results by < 1e-34): the vector exp and log1p
 * take a slow scalar path for arguments that overflow or underflow. */
static void SUFFIX(ssp_sigmoid)(int64_t len, const T *restrict x, T *restrict s, T *restrict g,
                                int threads) {
    const int64_t chunk = 4096; /* (a combined "parallel for simd" calls the scalar exp) */
    PARALLEL_FOR(len)
    for (int64_t start = 0; start < len; start += chunk) {
        const int64_t end = start + chunk < len ? start + chunk : len;
#pragma omp simd
        for (int64_t i = start; i < end; i++) {
            const T v = x[i];
            const T c = v < (T)-80 ? (T)-80 : (v > (T)80 ? (T)80 : v);
            s[i] = (v > (T)20 ? v : LOG1P(EXP(c))) - (T)LN2;
            g[i] = (T)1 / ((T)1 + EXP(-c));
        }
    }
}

/* out[v] += Σ_{q ∈ ptr[v]..ptr[v+1]} a[ia[order[q]]] ⊙ b[ib[order[q]]] (rows of width F): the
 * convolution (v = dst) and both its gradients (v = src, v = filter row), without races */
static void SUFFIX(csr_product)(int64_t n_out, const int64_t *order, const int64_t *ptr,
                                const T *a, const int64_t *ia, const T *b, const int64_t *ib,
                                int64_t F, T *out, int threads) {
    PARALLEL_FOR(ptr[n_out] * F)
    for (int64_t v = 0; v < n_out; v++) {
        T *restrict o = out + v * F;
        for (int64_t q = ptr[v]; q < ptr[v + 1]; q++) {
            const int64_t e = order[q];
            const T *restrict ap = a + ia[e] * F, *restrict bp = b + ib[e] * F;
#pragma omp simd
            for (int64_t c = 0; c < F; c++) o[c] += ap[c] * bp[c];
        }
    }
}

/* Gaussians e_k = exp(−γ (r − μ_k)²) (exactly 0 below exp(log_tiny): no subnormals), cosine
 * cutoff fc = ½ (cos(π r / r_c) + 1) (0 from r_c on) and their r-derivatives; the same
 * operation order as euclidnn.nn.gaussian_basis and cosine_cutoff. */
static void SUFFIX(schnet_radial)(int64_t n, int64_t K, const T *r, const T *mu, double gamma,
                           double r_max, double log_tiny, T *e, T *de, T *fc, T *dfc,
                           int threads) {
    const T g = (T)gamma, w = (T)(M_PI / r_max), lt = (T)log_tiny;
    PARALLEL_FOR(n * K)
    for (int64_t i = 0; i < n; i++) {
        const T ri = r[i];
        const T inside = ri < (T)r_max ? (T)1 : (T)0;
        const T theta = ri * w;
        fc[i] = (T)0.5 * (COS(theta) + (T)1) * inside;
        dfc[i] = SIN(theta) * inside * (T)(-0.5 * M_PI / r_max);
#pragma omp simd
        for (int64_t k = 0; k < K; k++) {
            const T d = ri - mu[k];
            const T x = -g * (d * d);
            const T ek = x < lt ? (T)0 : EXP(x);
            e[i * K + k] = ek;
            de[i * K + k] = d * (T)(-2.0 * gamma) * ek;
        }
    }
}

/* The weights of one interaction block (nn.Linear layouts: W [out, in], b [out]). */
typedef struct {
    const T *filter1_w, *filter1_b, *filter2_w, *filter2_b, *in2filter_w, *out1_w, *out1_b,
        *out2_w, *out2_b;
} SUFFIX(interaction_t);

/* Interaction t's weights from the pointer list of schnet_energy_forces (below). */
static SUFFIX(interaction_t) SUFFIX(interaction)(const void *const *ptr, int64_t t) {
    const void *const *q = ptr + 23 + 9 * t;
    return (SUFFIX(interaction_t)){q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8]};
}

/* Energy per structure and forces of a SchNet model.
 *
 * dims: n_atoms, n_rows (undirected pairs; each filter row), n_edges, n_graphs,
 *       T (interactions), F (features), W (filters), K (Gaussians), H (readout width), threads,
 *       S (species)
 * ptr:  positions [n, 3], row offsets S·cell [n_rows, 3] or NULL, row src, row dst [n_rows],
 *       batch, species [n], edge src, dst, row [n_edges], then (order, ptr) of the edges by
 *       dst, by src and by row; μ [K], embedding [S, F], readout1 W [H, F], b [H],
 *       readout2 W [1, H], b [1], per-species scales, shifts [S]; then per interaction t:
 *       filter1 W [W, K], b [W], filter2 W [W, W], b [W], in2filter W [W, F],
 *       out1 W [F, W], b [F], out2 W [F, F], b [F]
 * weight: [n] or NULL (all 1): the forces are those of Σ_i weight_i E_i, i.e. the backward pass
 *       starts from ∂(Σ_i weight_i E_i)/∂E_i = weight_i (LAMMPS: 1 for the atoms a rank owns, 0
 *       for its ghosts, whose energies are wrong but whose positions still move owned energies)
 * out:  energy [n_graphs] (Σ E_i, unweighted), forces [n, 3] = −∂(Σ_i weight_i E_i)/∂R;
 *       atom_energy [n] (E_i) and row_grad [n_rows, 3] (∂(Σ_i weight_i E_i)/∂vec of each row,
 *       for the derivative in the cell) where not NULL
 * Returns 0; 1 where the workspace could not be allocated, 2 where an entry of batch is not in
 * 0 … n_graphs − 1, 3 where a species is not in 0 … S − 1 (nothing written in those cases; the
 * caller checked every other index). Not reentrant within one thread (the workspace is per
 * thread).
 */
int SUFFIX(schnet_energy_forces)(const int64_t *dims, const void *const *ptr, double gamma,
                                 double r_max, double log_tiny, SUFFIX(gemm_t) *gemm, T *energy,
                                 T *forces, const T *weight, T *atom_energy, T *row_grad) {
    const int64_t n = dims[0], P = dims[1], G = dims[3], NT = dims[4], F = dims[5], W = dims[6],
                  K = dims[7], H = dims[8], TW = NT * W;
    const int threads = (int)dims[9];
    const int64_t S = dims[10];
    const T *pos = ptr[0], *off = ptr[1], *mu = ptr[15], *emb = ptr[16], *R1 = ptr[17],
            *rb1 = ptr[18], *R2 = ptr[19], *rb2 = ptr[20], *scales = ptr[21], *shifts = ptr[22];
    const int64_t *src_p = ptr[2], *dst_p = ptr[3], *batch = ptr[4], *species = ptr[5],
                  *src = ptr[6], *dst = ptr[7], *row = ptr[8], *by_dst = ptr[9],
                  *by_dst_ptr = ptr[10], *by_src = ptr[11], *by_src_ptr = ptr[12],
                  *by_row = ptr[13], *by_row_ptr = ptr[14];

    for (int64_t i = 0; i < n; i++) { /* the per-call indices, checked before any is used */
        if (batch[i] < 0 || batch[i] >= G) return 2;
        if (species[i] < 0 || species[i] >= S) return 3;
    }

    /* workspace: one allocation, carved into these arrays (x, osig, filt, wf: one block per
     * interaction; a, sa, ga: the T blocks side by side in each row) */
    T *vec, *r, *e, *de, *fc, *dfc, *a, *sa, *ga, *filt, *wf, *h, *x, *o, *osig, *so, *m, *p, *sp,
        *psig, *gh, *go, *gm, *gx, *gw, *tmp, *gfc, *ge;
    struct {
        T **array;
        int64_t size;
    } parts[] = {{&vec, 3 * P},      {&r, P},           {&e, P * K},      {&de, P * K},
                 {&fc, P},           {&dfc, P},         {&a, P * TW},     {&sa, P * TW},
                 {&ga, P * TW},      {&filt, NT * P * W}, {&wf, NT * P * W}, {&h, n * F},
                 {&x, NT * n * W},   {&o, n * F},       {&osig, NT * n * F}, {&so, n * F},
                 {&m, n * W},        {&p, n * H},       {&sp, n * H},     {&psig, n * H},
                 {&gh, n * F},       {&go, n * F},      {&gm, n * W},     {&gx, n * W},
                 {&gw, P * W},       {&tmp, P * W},     {&gfc, P},        {&ge, P * K}};
    const int n_parts = sizeof parts / sizeof parts[0];
    int64_t total = 1;
    for (int i = 0; i < n_parts; i++) total += parts[i].size;
    T *work = workspace(total * sizeof(T));
    if (!work) return 1;
    for (int64_t i = 0, at = 0; i < n_parts; at += parts[i].size, i++) *parts[i].array = work + at;

    /* distances of the rows: r_src − r_dst + S·cell */
    PARALLEL_FOR(P * 16)
    for (int64_t q = 0; q < P; q++) {
        T s = 0;
        for (int c = 0; c < 3; c++) {
            T d = pos[src_p[q] * 3 + c] - pos[dst_p[q] * 3 + c];
            if (off) d += off[q * 3 + c];
            vec[q * 3 + c] = d;
            s += d * d;
        }
        r[q] = sqrt(s);
    }
    SUFFIX(schnet_radial)(P, K, r, mu, gamma, r_max, log_tiny, e, de, fc, dfc, threads);

    /* filters W_t = fc · (ssp(e W1ᵀ + b1) W2ᵀ + b2), first layers of all t side by side in a */
    for (int64_t t = 0; t < NT; t++) {
        const SUFFIX(interaction_t) it = SUFFIX(interaction)(ptr, t);
        SUFFIX(linear)(gemm, P, W, K, e, K, it.filter1_w, it.filter1_b, a + t * W, TW);
    }
    SUFFIX(ssp_sigmoid)(P * TW, a, sa, ga, threads); /* ga = ssp'(a) for now */
    for (int64_t t = 0; t < NT; t++) {
        const SUFFIX(interaction_t) it = SUFFIX(interaction)(ptr, t);
        T *ft = filt + t * P * W, *wt = wf + t * P * W;
        SUFFIX(linear)(gemm, P, W, W, sa + t * W, TW, it.filter2_w, it.filter2_b, ft, W);
        PARALLEL_FOR(P * W)
        for (int64_t q = 0; q < P; q++)
            for (int64_t c = 0; c < W; c++) wt[q * W + c] = ft[q * W + c] * fc[q];
    }

    /* interactions: h += out2(ssp(out1(Σ_j x_j ⊙ W_ij))), x = in2filter(h) */
    for (int64_t i = 0; i < n; i++) memcpy(h + i * F, emb + species[i] * F, F * sizeof(T));
    for (int64_t t = 0; t < NT; t++) {
        const SUFFIX(interaction_t) it = SUFFIX(interaction)(ptr, t);
        T *xt = x + t * n * W, *osig_t = osig + t * n * F;
        SUFFIX(linear)(gemm, n, W, F, h, F, it.in2filter_w, NULL, xt, W);
        memset(m, 0, n * W * sizeof(T));
        SUFFIX(csr_product)(n, by_dst, by_dst_ptr, xt, src, wf + t * P * W, row, W, m, threads);
        SUFFIX(linear)(gemm, n, F, W, m, W, it.out1_w, it.out1_b, o, F);
        SUFFIX(ssp_sigmoid)(n * F, o, so, osig_t, threads);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < F; c++) h[i * F + c] += it.out2_b[c];
        SUFFIX(mm)(gemm, 'N', 'T', n, F, F, so, F, it.out2_w, F, 1, h, F);
    }

    /* readout: E_i = shift_Z + scale_Z · (ssp(h R1ᵀ + b1) R2ᵀ + b2), summed per structure */
    SUFFIX(linear)(gemm, n, H, F, h, F, R1, rb1, p, H);
    SUFFIX(ssp_sigmoid)(n * H, p, sp, psig, threads);
    memset(energy, 0, G * sizeof(T));
    for (int64_t i = 0; i < n; i++) {
        T out = rb2[0];
        for (int64_t j = 0; j < H; j++) out += sp[i * H + j] * R2[j];
        const T e_i = shifts[species[i]] + out * scales[species[i]];
        energy[batch[i]] += e_i;
        if (atom_energy) atom_energy[i] = e_i;
        const T seed = scales[species[i]] * (weight ? weight[i] : (T)1);
        for (int64_t j = 0; j < H; j++) /* ∂(Σ weight E)/∂p, into p */
            p[i * H + j] = psig[i * H + j] * seed * R2[j];
    }

    /* reverse pass: g_z = ∂E/∂z */
    SUFFIX(mm)(gemm, 'N', 'N', n, F, H, p, H, R1, F, 0, gh, F);
    memset(gfc, 0, P * sizeof(T));
    for (int64_t t = NT - 1; t >= 0; t--) {
        const SUFFIX(interaction_t) it = SUFFIX(interaction)(ptr, t);
        const T *xt = x + t * n * W, *osig_t = osig + t * n * F;
        const T *ft = filt + t * P * W, *wt = wf + t * P * W;
        SUFFIX(mm)(gemm, 'N', 'N', n, F, F, gh, F, it.out2_w, F, 0, go, F);
        for (int64_t i = 0; i < n * F; i++) go[i] *= osig_t[i];
        SUFFIX(mm)(gemm, 'N', 'N', n, W, F, go, F, it.out1_w, W, 0, gm, W);
        memset(gx, 0, n * W * sizeof(T));
        SUFFIX(csr_product)(n, by_src, by_src_ptr, wt, row, gm, dst, W, gx, threads);
        memset(gw, 0, P * W * sizeof(T));
        SUFFIX(csr_product)(P, by_row, by_row_ptr, xt, src, gm, dst, W, gw, threads);
        SUFFIX(mm)(gemm, 'N', 'N', n, F, W, gx, W, it.in2filter_w, F, 1, gh, F);
        PARALLEL_FOR(P * W)
        for (int64_t q = 0; q < P; q++) {
            T s = 0;
            for (int64_t c = 0; c < W; c++) {
                s += gw[q * W + c] * ft[q * W + c];
                gw[q * W + c] *= fc[q];
            }
            gfc[q] += s;
        }
        SUFFIX(mm)(gemm, 'N', 'N', P, W, W, gw, W, it.filter2_w, W, 0, tmp, W);
        PARALLEL_FOR(P * W)
        for (int64_t q = 0; q < P; q++)
            for (int64_t c = 0; c < W; c++) ga[q * TW + t * W + c] *= tmp[q * W + c];
    }
    for (int64_t t = 0; t < NT; t++) {
        const SUFFIX(interaction_t) it = SUFFIX(interaction)(ptr, t);
        SUFFIX(mm)(gemm, 'N', 'N', P, K, W, ga + t * W, TW, it.filter1_w, K, t ? 1 : 0, ge, K);
    }

    /* F = −∂E/∂R: ∂E/∂vec = (∂E/∂r) vec / r, −that on the source atom, + on the destination */
    PARALLEL_FOR(P * K)
    for (int64_t q = 0; q < P; q++) {
        T g_r = gfc[q] * dfc[q];
        for (int64_t k = 0; k < K; k++) g_r += ge[q * K + k] * de[q * K + k];
        /* r = (∂E/∂r) / r from here on; 0 for coincident atoms, as autograd's norm */
        r[q] = r[q] > 0 ? g_r / r[q] : 0;
    }
    if (row_grad)
        for (int64_t q = 0; q < P; q++)
            for (int c = 0; c < 3; c++) row_grad[q * 3 + c] = r[q] * vec[q * 3 + c];
    memset(forces, 0, n * 3 * sizeof(T));
    for (int64_t q = 0; q < P; q++) {
        const T s = r[q];
        for (int c = 0; c < 3; c++) {
            forces[dst_p[q] * 3 + c] += s * vec[q * 3 + c];
            forces[src_p[q] * 3 + c] -= s * vec[q * 3 + c];
        }
    }
    return 0;
}

#endif
