// euclidnn::schnet_energy_forces, SchNet's whole-model kernel (euclidnn/kernels/_schnet.c) as a
// TorchScript custom op for C++: compiled into the LAMMPS plugin with _schnet.c itself (built as
// C, linked in), so that an exported SchNet file's method energy_forces gives per-atom energies,
// forces and the cell derivative in one call, without an autograd graph.
//
// The op and its contract are those of euclidnn/kernels/schnet.py (schnet_op, the Python
// registration):
//
//   schnet_energy_forces(Tensor positions, Tensor species, Tensor edge_src, Tensor edge_dst,
//       Tensor edge_pair, Tensor pair_edge, Tensor edge_shift, Tensor cell, Tensor weight,
//       Tensor mu, Tensor[] params, float gamma, float r_max) -> (Tensor, Tensor, Tensor)
//
// returns (E_i [N], F = -d(sum_i weight_i E_i)/dR [N, 3], d(sum_i weight_i E_i)/dcell [3, 3]).
// Every argument is checked before the kernel sees a pointer (c10 errors), so no input crashes
// the process. The kernel's matrix products call the BLAS that libtorch itself uses: its sgemm_
// and dgemm_, looked up in the loaded libtorch_cpu (as the Python side does); where it has none,
// the op raises an error (export with --portable). Registered when the plugin is loaded, unless
// the process has the op already (a Python process that imported euclidnn.export).

#include <torch/library.h>
#include <torch/script.h>

#include "ops_checks.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <cmath>
#include <limits>
#include <vector>

extern "C" {
typedef void gemm_f32_t(const char *, const char *, const int64_t *, const int64_t *,
                        const int64_t *, const float *, const float *, const int64_t *,
                        const float *, const int64_t *, const float *, float *, const int64_t *);
typedef void gemm_f64_t(const char *, const char *, const int64_t *, const int64_t *,
                        const int64_t *, const double *, const double *, const int64_t *,
                        const double *, const int64_t *, const double *, double *,
                        const int64_t *);
int schnet_energy_forces_f32(const int64_t *dims, const void *const *ptr, double gamma,
                             double r_max, double log_tiny, gemm_f32_t *gemm, float *energy,
                             float *forces, const float *weight, float *atom_energy,
                             float *row_grad);
int schnet_energy_forces_f64(const int64_t *dims, const void *const *ptr, double gamma,
                             double r_max, double log_tiny, gemm_f64_t *gemm, double *energy,
                             double *forces, const double *weight, double *atom_energy,
                             double *row_grad);
}

namespace {

using torch::Tensor;

constexpr const char *kOp = "euclidnn::schnet_energy_forces";
constexpr const char *kSchema =
    "schnet_energy_forces(Tensor positions, Tensor species, Tensor edge_src, Tensor edge_dst, "
    "Tensor edge_pair, Tensor pair_edge, Tensor edge_shift, Tensor cell, Tensor weight, "
    "Tensor mu, Tensor[] params, float gamma, float r_max) -> (Tensor, Tensor, Tensor)";

// libtorch's own ?gemm_ (nullptr where it exports none)
void *blas(const char *name)
{
  void *handle = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
  void *found = handle ? dlsym(handle, name) : nullptr;
  if (handle) dlclose(handle);
  return found ? found : dlsym(RTLD_DEFAULT, name);
}

// (index checks: ops_checks.h)
Tensor index_tensor(const Tensor &t, const char *name, int64_t size, int64_t length,
                    bool check_range = true)
{
  return euclidnn::index_tensor(t, kOp, name, size, length, check_range);
}

// a contiguous float tensor of `dtype` and exactly `shape`
Tensor float_tensor(const Tensor &t, const char *name, c10::IntArrayRef shape,
                    torch::ScalarType dtype)
{
  TORCH_CHECK_TYPE(t.scalar_type() == dtype && t.device().is_cpu(), kOp, ": ", name,
                   " must be a CPU tensor of ", dtype, ", got ", t.scalar_type(), " on ",
                   t.device());
  TORCH_CHECK_VALUE(t.sizes() == shape, kOp, ": ", name, " must have shape ", shape, ", got ",
                    t.sizes());
  return t.contiguous();
}

// (order, ptr): the edges with index 0, then 1, ... (stable); group v is order[ptr[v]:ptr[v+1]]
std::pair<Tensor, Tensor> csr(const Tensor &index, int64_t size)
{
  Tensor order = std::get<1>(index.sort(/*stable=*/true, 0, false)).contiguous();
  Tensor ptr = torch::zeros({size + 1}, torch::kInt64);
  if (index.numel() > 0) ptr.slice(0, 1).copy_(torch::cumsum(torch::bincount(index, {}, size), 0));
  return {order, ptr};
}

std::tuple<Tensor, Tensor, Tensor> schnet_cpu(
    const Tensor &positions_in, const Tensor &species_in, const Tensor &edge_src_in,
    const Tensor &edge_dst_in, const Tensor &edge_pair_in, const Tensor &pair_edge_in,
    const Tensor &edge_shift_in, const Tensor &cell_in, const Tensor &weight_in,
    const Tensor &mu_in, c10::ArrayRef<Tensor> params, double gamma, double r_max)
{
  const auto dtype = positions_in.scalar_type();
  TORCH_CHECK_TYPE((dtype == torch::kFloat32 || dtype == torch::kFloat64) &&
                       positions_in.device().is_cpu(),
                   kOp, ": positions must be a float32 or float64 CPU tensor, got ", dtype);
  TORCH_CHECK_VALUE(positions_in.dim() == 2 && positions_in.size(1) == 3, kOp,
                    ": positions must have shape [N, 3], got ", positions_in.sizes());
  const int64_t n = positions_in.size(0);
  TORCH_CHECK_VALUE(edge_src_in.dim() == 1, kOp, ": edge_src must have shape [E], got ",
                    edge_src_in.sizes());
  const int64_t n_edges = edge_src_in.size(0);
  TORCH_CHECK_VALUE(pair_edge_in.dim() == 1, kOp, ": pair_edge must have shape [P], got ",
                    pair_edge_in.sizes());
  const int64_t n_pairs = pair_edge_in.size(0);
  TORCH_CHECK_VALUE(mu_in.dim() == 1, kOp, ": mu must have shape [K], got ", mu_in.sizes());
  const int64_t K = mu_in.size(0);
  const int64_t n_params = (int64_t) params.size();
  TORCH_CHECK_VALUE(n_params >= 16 && (n_params - 7) % 9 == 0, kOp,
                    ": params must be 7 + 9 * interactions tensors, got ", n_params);
  const int64_t NT = (n_params - 7) / 9;
  TORCH_CHECK_VALUE(params[0].dim() == 2 && params[1].dim() == 2 && params[7].dim() == 2, kOp,
                    ": params[0] (embedding), params[1] (readout1 W) and params[7] (filter1 W) "
                    "must be 2-d");
  const int64_t S = params[0].size(0), F = params[0].size(1), H = params[1].size(0),
                W = params[7].size(0);
  TORCH_CHECK_VALUE(params[7].size(1) == K, kOp, ": filter1 W has ", params[7].size(1),
                    " inputs, mu ", K, " Gaussians");
  // the weights: each of its shape (nn.Linear layouts), contiguous, alive until the call returns
  std::vector<std::vector<int64_t>> shapes{{S, F}, {H, F}, {H}, {1, H}, {1}, {S}, {S}};
  for (int64_t t = 0; t < NT; t++)
    for (auto s : std::vector<std::vector<int64_t>>{
             {W, K}, {W}, {W, W}, {W}, {W, F}, {F, W}, {F}, {F, F}, {F}})
      shapes.push_back(s);
  std::vector<Tensor> weights;
  for (int64_t k = 0; k < n_params; k++) {
    std::string name = "params[" + std::to_string(k) + "]";
    weights.push_back(float_tensor(params[k], name.c_str(), shapes[k], dtype));
  }
  Tensor positions = float_tensor(positions_in, "positions", {n, 3}, dtype);
  Tensor edge_shift = float_tensor(edge_shift_in, "edge_shift", {n_edges, 3}, dtype);
  Tensor cell = float_tensor(cell_in, "cell", {3, 3}, dtype);
  Tensor weight = float_tensor(weight_in, "weight", {n}, dtype);
  Tensor mu = float_tensor(mu_in, "mu", {K}, dtype);
  Tensor species = index_tensor(species_in, "species", S, n, /*check_range=*/false);    // in C
  Tensor src = index_tensor(edge_src_in, "edge_src", n, -1);
  Tensor dst = index_tensor(edge_dst_in, "edge_dst", n, n_edges);
  Tensor row = index_tensor(edge_pair_in, "edge_pair", n_pairs, n_edges);
  Tensor pair_edge = index_tensor(pair_edge_in, "pair_edge", n_edges, n_pairs);
  Tensor row_src = src.index_select(0, pair_edge), row_dst = dst.index_select(0, pair_edge);
  Tensor row_shift = edge_shift.index_select(0, pair_edge);    // [P, 3]
  if (n_edges > 0) {    // each edge's pair is the edge itself or its reverse
    Tensor rs = row_src.index_select(0, row), rd = row_dst.index_select(0, row);
    Tensor sh = row_shift.index_select(0, row);
    Tensor same = rs.eq(src) & rd.eq(dst) & sh.eq(edge_shift).all(-1);
    Tensor reverse = rs.eq(dst) & rd.eq(src) & sh.eq(-edge_shift).all(-1);
    Tensor ok = same | reverse;
    TORCH_CHECK_VALUE(ok.all().item<bool>(), kOp, ": edge ",
                      (~ok).nonzero()[0][0].item<int64_t>(),
                      "'s pair (edge_pair, pair_edge) is neither the edge nor its reverse");
  }
  TORCH_CHECK(std::isfinite(gamma) && std::isfinite(r_max) && r_max > 0, kOp,
              ": gamma and r_max must be finite, r_max positive");
  void *gemm = blas(dtype == torch::kFloat64 ? "dgemm_" : "sgemm_");
  TORCH_CHECK(gemm != nullptr, kOp,
              ": libtorch exports no BLAS sgemm_/dgemm_ here; export the model with --portable");

  Tensor row_offset = row_shift.mm(cell).contiguous();    // S.cell of each pair's representative
  Tensor batch = torch::zeros({n}, torch::kInt64);
  auto [by_dst, by_dst_ptr] = csr(dst, n);
  auto [by_src, by_src_ptr] = csr(src, n);
  auto [by_row, by_row_ptr] = csr(row, n_pairs);
  std::vector<Tensor> tensors{positions, row_offset, row_src, row_dst, batch, species, src, dst,
                              row, by_dst, by_dst_ptr, by_src, by_src_ptr, by_row, by_row_ptr,
                              mu};
  std::vector<const void *> pointers;
  for (auto &t : tensors) pointers.push_back(t.data_ptr());
  for (auto &t : weights) pointers.push_back(t.data_ptr());
  const int64_t dims[11] = {n, n_pairs, n_edges, 1, NT, F, W, K, H, at::get_num_threads(), S};

  auto options = torch::TensorOptions().dtype(dtype);
  Tensor energy = torch::empty({1}, options), forces = torch::empty({n, 3}, options);
  Tensor atom_energy = torch::empty({n}, options), row_grad = torch::empty({n_pairs, 3}, options);
  int status;
  if (dtype == torch::kFloat64)
    status = schnet_energy_forces_f64(
        dims, pointers.data(), gamma, r_max, std::log(std::numeric_limits<double>::min()),
        (gemm_f64_t *) gemm, energy.data_ptr<double>(), forces.data_ptr<double>(),
        weight.data_ptr<double>(), atom_energy.data_ptr<double>(), row_grad.data_ptr<double>());
  else
    status = schnet_energy_forces_f32(
        dims, pointers.data(), gamma, r_max, std::log(std::numeric_limits<float>::min()),
        (gemm_f32_t *) gemm, energy.data_ptr<float>(), forces.data_ptr<float>(),
        weight.data_ptr<float>(), atom_energy.data_ptr<float>(), row_grad.data_ptr<float>());
  TORCH_CHECK_INDEX(status != 3, kOp, ": species: an index is out of range for ", S, " rows");
  TORCH_CHECK(status == 0, kOp, ": no memory for the workspace of ", n, " atoms (status ",
              status, ")");
  return {atom_energy, forces, row_shift.t().mm(row_grad)};
}

// whether this plugin defines the op (false: the process had it already)
const bool defined_here = !c10::Dispatcher::singleton().findSchema({kOp, ""}).has_value();

}    // namespace

TORCH_LIBRARY_FRAGMENT(euclidnn, m)
{
  if (defined_here) m.def(kSchema);
}

TORCH_LIBRARY_IMPL(euclidnn, CPU, m)
{
  if (defined_here) m.impl("schnet_energy_forces", &schnet_cpu);
}
