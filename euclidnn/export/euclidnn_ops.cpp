// euclidnn::uvu_conv, the fused convolution kernel (euclidnn/kernels/_conv.c) as a TorchScript
// custom op for C++: compiled into the LAMMPS plugin with _conv.c itself (built as C, linked
// in), so that an export's traced graph runs the kernel instead of the PyTorch reference.
//
// The op and its contract are those of euclidnn/kernels/ops.py (the Python registration):
//
//   uvu_conv(int slot, Tensor? x, Tensor? y, Tensor? w, Tensor? g, Tensor edge_src,
//            Tensor edge_dst, Tensor? row, Tensor num_out, Tensor entries, Tensor coefficients,
//            int[] dims) -> Tensor
//
// returns dQ/d(slot) of the quadrilinear form Q(x, y, w, g) of _conv.c from the other three
// arguments (slot 3: the convolution itself). Its autograd function's backward is the op at
// the other slots, so derivatives of any order exist (LAMMPS takes the first: forces, virial).
// Every argument is checked before the kernel sees a pointer (c10 errors: ValueError,
// TypeError, IndexError in Python terms), so no input crashes the process.
//
// Registration happens when the plugin is loaded (static initialisers), before LAMMPS calls
// torch::jit::load. It is skipped where the op exists already: a Python process that imported
// euclidnn.export and then loads the plugin into an embedded LAMMPS keeps its own.

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <torch/script.h>

#include "ops_checks.h"

#include <array>
#include <optional>
#include <vector>

extern "C" {
void uvu_conv_f32(int mode, int64_t n_out, int64_t n_edges, const int64_t *src,
                  const int64_t *dst, const int64_t *order, const int64_t *ptr,
                  const int64_t *wrow, float *x, float *y, float *w, float *g, int64_t xn,
                  int64_t yn, int64_t wn, int64_t gn, const int64_t *entries, const float *coef,
                  int64_t n_entries, int threads);
void uvu_conv_f64(int mode, int64_t n_out, int64_t n_edges, const int64_t *src,
                  const int64_t *dst, const int64_t *order, const int64_t *ptr,
                  const int64_t *wrow, double *x, double *y, double *w, double *g, int64_t xn,
                  int64_t yn, int64_t wn, int64_t gn, const int64_t *entries,
                  const double *coef, int64_t n_entries, int threads);
}

namespace {

using torch::Tensor;
using OptTensor = std::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char *kOp = "euclidnn::uvu_conv";
constexpr const char *kSchema =
    "uvu_conv(int slot, Tensor? x, Tensor? y, Tensor? w, Tensor? g, Tensor edge_src, "
    "Tensor edge_dst, Tensor? row, Tensor num_out, Tensor entries, Tensor coefficients, "
    "int[] dims) -> Tensor";
constexpr int X = 0, Y = 1, W = 2, G = 3;
constexpr int kMode[4] = {1, 3, 2, 0};    // the kernel mode computing each slot
constexpr const char *kName[4] = {"x", "y", "w", "g"};

bool present(const OptTensor &t)
{
  return t.has_value() && t->defined();
}

// (index checks: ops_checks.h)
Tensor index_tensor(const Tensor &t, const char *name, int64_t size, int64_t length,
                    bool check_range = true)
{
  return euclidnn::index_tensor(t, kOp, name, size, length, check_range);
}

// edges grouped by `index` (CSR): order lists the edges of group 0, then 1, ...; group v is
// order[ptr[v] : ptr[v + 1]]
std::pair<Tensor, Tensor> csr(const Tensor &index, int64_t size)
{
  Tensor order = std::get<1>(index.sort(/*stable=*/true, 0, false)).contiguous();
  Tensor ptr = torch::zeros({size + 1}, torch::kInt64);
  if (index.numel() > 0) ptr.slice(0, 1).copy_(torch::cumsum(torch::bincount(index, {}, size), 0));
  return {order, ptr};
}

template <typename T> T *data(Tensor &t)
{
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

Tensor uvu_conv_cpu(int64_t slot, const OptTensor &x, const OptTensor &y, const OptTensor &w,
                    const OptTensor &g, const Tensor &edge_src, const Tensor &edge_dst,
                    const OptTensor &row, const Tensor &num_out, const Tensor &entries_in,
                    const Tensor &coefficients, c10::IntArrayRef dims)
{
  std::array<const OptTensor *, 4> args{&x, &y, &w, &g};
  TORCH_CHECK_VALUE(slot >= 0 && slot < 4 && !present(*args[slot]), kOp,
                    ": slot must be 0 ... 3 with that argument None, got ", slot);
  for (int s : {X, W, G})
    TORCH_CHECK_VALUE(s == slot || present(*args[s]), kOp, ": ", kName[s], " is needed for slot ",
                      slot);
  TORCH_CHECK_VALUE(dims.size() == 4 && *std::min_element(dims.begin(), dims.end()) >= 0, kOp,
                    ": dims must be four widths, got ", dims);
  TORCH_CHECK_VALUE((num_out.scalar_type() == torch::kInt64 || num_out.scalar_type() == torch::kInt32) &&
                        num_out.numel() == 1,
                    kOp, ": num_out must be one integer");
  const int64_t n = num_out.item<int64_t>();
  TORCH_CHECK_VALUE(n >= 0, kOp, ": num_out must not be negative, got ", n);
  for (int s = 0; s < 4; s++)
    TORCH_CHECK_VALUE(!present(*args[s]) || (*args[s])->dim() == 2, kOp, ": ", kName[s],
                      " must be 2-d, got ", (*args[s])->sizes());
  TORCH_CHECK_VALUE(entries_in.device().is_cpu() && coefficients.device().is_cpu() &&
                        num_out.device().is_cpu(),
                    kOp, ": entries, coefficients and num_out must be CPU tensors");
  // the floating-point arguments: one dtype, CPU, shapes checked below
  const OptTensor &first = present(x) ? x : w;
  const auto dtype = first->scalar_type();
  TORCH_CHECK_VALUE(dtype == torch::kFloat32 || dtype == torch::kFloat64, kOp,
                    ": x, y, w and g must be float32 or float64, got ", dtype);
  const bool has_y = !(slot != Y && !present(y));    // y = None outside its slot: y = 1
  TORCH_CHECK_VALUE(has_y || dims[Y] == 1, kOp, ": y = None (y = 1) needs dims[1] = 1");
  TORCH_CHECK_VALUE(edge_src.dim() == 1, kOp, ": edge_src must be 1-d, got ", edge_src.sizes());
  const int64_t n_edges = edge_src.size(0);
  const int64_t num_src = slot == X ? n : x->size(0);
  const int64_t num_nodes = slot == G ? n : g->size(0);
  const int64_t num_rows = !present(row) ? n_edges : (slot == W ? n : w->size(0));
  TORCH_CHECK_VALUE((slot != Y && (slot != W || present(row))) || n == n_edges, kOp,
                    ": num_out ", n, " for slot ", slot, ", but ", n_edges, " edges");
  const std::array<int64_t, 4> rows{num_src, n_edges, num_rows, num_nodes};
  std::array<Tensor, 4> t;    // contiguous, alive until the kernel returns
  for (int s = 0; s < 4; s++) {
    if (!present(*args[s])) continue;
    const Tensor &a = **args[s];
    TORCH_CHECK_VALUE(a.scalar_type() == dtype && a.device().is_cpu(), kOp, ": ", kName[s],
                      " must be a CPU tensor of ", dtype, ", got ", a.scalar_type(), " on ",
                      a.device());
    TORCH_CHECK_VALUE(a.dim() == 2 && a.size(0) == rows[s] && a.size(1) == dims[s], kOp, ": ",
                      kName[s], " must have shape [", rows[s], ", ", dims[s], "], got ",
                      a.sizes());
    t[s] = a.contiguous();
  }
  // the entries: every one inside the rows it reads and writes
  TORCH_CHECK_TYPE(entries_in.scalar_type() == torch::kInt64 || entries_in.scalar_type() == torch::kInt32,
                   kOp, ": entries must be integers");
  TORCH_CHECK_VALUE(entries_in.dim() == 2 && entries_in.size(1) == 5, kOp,
                    ": entries must have shape [n, 5], got ", entries_in.sizes());
  Tensor entries = entries_in.to(torch::kInt64).contiguous();
  const int64_t n_entries = entries.size(0);
  auto e = entries.accessor<int64_t, 2>();
  for (int64_t k = 0; k < n_entries; k++) {
    int64_t xo = e[k][0], j = e[k][1], go = e[k][2], wo = e[k][3], u = e[k][4];
    bool inside = xo >= 0 && j >= 0 && go >= 0 && wo >= 0 && u >= 0 && xo + u <= dims[X] &&
                  j < dims[Y] && go + u <= dims[G] && wo + u <= dims[W];
    TORCH_CHECK_VALUE(inside, kOp, ": entry ", k, " is outside the widths ", dims);
  }
  TORCH_CHECK_VALUE(coefficients.is_floating_point() && coefficients.dim() == 1 &&
                        coefficients.size(0) == n_entries,
                    kOp, ": coefficients must be floating point of shape [", n_entries, "]");
  Tensor coef = coefficients.to(torch::kCPU, dtype).contiguous();
  Tensor src = index_tensor(edge_src, "edge_src", num_src, -1);
  Tensor dst = index_tensor(edge_dst, "edge_dst", num_nodes, n_edges);
  Tensor wrow = present(row) ? index_tensor(*row, "row", num_rows, n_edges) : Tensor();

  Tensor out = torch::zeros({rows[slot], dims[slot]}, torch::TensorOptions().dtype(dtype));
  if (n_edges == 0 || out.numel() == 0) return out;
  t[slot] = out;
  const int mode = kMode[slot];
  Tensor order, ptr;
  if (mode == 0) std::tie(order, ptr) = csr(dst, num_nodes);
  if (mode == 1) std::tie(order, ptr) = csr(src, num_src);
  if (mode == 2 && wrow.defined()) std::tie(order, ptr) = csr(wrow, num_rows);
  const int64_t *order_p = order.defined() ? order.data_ptr<int64_t>() : nullptr;
  const int64_t *ptr_p = ptr.defined() ? ptr.data_ptr<int64_t>() : nullptr;
  const int64_t *row_p = wrow.defined() ? wrow.data_ptr<int64_t>() : nullptr;
  const int threads = at::get_num_threads();
  if (dtype == torch::kFloat64)
    uvu_conv_f64(mode, rows[slot], n_edges, src.data_ptr<int64_t>(), dst.data_ptr<int64_t>(),
                 order_p, ptr_p, row_p, data<double>(t[X]), has_y ? data<double>(t[Y]) : nullptr,
                 data<double>(t[W]), data<double>(t[G]), dims[X], dims[Y], dims[W], dims[G],
                 entries.data_ptr<int64_t>(), coef.data_ptr<double>(), n_entries, threads);
  else
    uvu_conv_f32(mode, rows[slot], n_edges, src.data_ptr<int64_t>(), dst.data_ptr<int64_t>(),
                 order_p, ptr_p, row_p, data<float>(t[X]), has_y ? data<float>(t[Y]) : nullptr,
                 data<float>(t[W]), data<float>(t[G]), dims[X], dims[Y], dims[W], dims[G],
                 entries.data_ptr<int64_t>(), coef.data_ptr<float>(), n_entries, threads);
  return out;
}

Tensor call_op(int64_t slot, const OptTensor &x, const OptTensor &y, const OptTensor &w,
               const OptTensor &g, const Tensor &edge_src, const Tensor &edge_dst,
               const OptTensor &row, const Tensor &num_out, const Tensor &entries,
               const Tensor &coefficients, c10::IntArrayRef dims)
{
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kOp, "")
                       .typed<Tensor(int64_t, const OptTensor &, const OptTensor &,
                                     const OptTensor &, const OptTensor &, const Tensor &,
                                     const Tensor &, const OptTensor &, const Tensor &,
                                     const Tensor &, const Tensor &, c10::IntArrayRef)>();
  return op.call(slot, x, y, w, g, edge_src, edge_dst, row, num_out, entries, coefficients, dims);
}

OptTensor optional(const Tensor &t)
{
  return t.defined() ? OptTensor(t) : std::nullopt;
}

// dQ/d(slot); its gradient with respect to argument s is dQ/ds with the incoming gradient in
// `slot` (Q is linear in each argument), i.e. the op again
class UvuConv : public torch::autograd::Function<UvuConv> {
 public:
  static Tensor forward(AutogradContext *ctx, int64_t slot, const OptTensor &x,
                        const OptTensor &y, const OptTensor &w, const OptTensor &g,
                        const Tensor &edge_src, const Tensor &edge_dst, const OptTensor &row,
                        const Tensor &num_out, const Tensor &entries, const Tensor &coefficients,
                        c10::IntArrayRef dims)
  {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = call_op(slot, x, y, w, g, edge_src, edge_dst, row, num_out, entries, coefficients,
                    dims);
    }
    std::vector<int64_t> rows(4, 0);
    std::array<const OptTensor *, 4> args{&x, &y, &w, &g};
    for (int s = 0; s < 4; s++) rows[s] = present(*args[s]) ? (*args[s])->size(0) : 0;
    rows[slot] = out.size(0);
    ctx->saved_data["slot"] = slot;
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["dims"] = dims.vec();
    auto value = [](const OptTensor &a) { return present(a) ? *a : Tensor(); };
    ctx->save_for_backward({value(x), value(y), value(w), value(g), edge_src, edge_dst,
                            value(row), entries, coefficients});
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_outputs)
  {
    const int64_t slot = ctx->saved_data["slot"].toInt();
    const auto rows = ctx->saved_data["rows"].toIntVector();
    const auto dims = ctx->saved_data["dims"].toIntVector();
    variable_list grads(12);    // one per argument of forward
    if (!grad_outputs[0].defined()) return grads;
    auto saved = ctx->get_saved_variables();
    std::array<Tensor, 4> args{saved[0], saved[1], saved[2], saved[3]};
    std::array<bool, 4> needed{};
    size_t edge = 0;    // the autograd input of args[s]: only given tensors count
    for (int s = 0; s < 4; s++)
      if (args[s].defined()) needed[s] = ctx->needs_input_grad(edge++);
    args[slot] = grad_outputs[0];
    for (int s = 0; s < 4; s++) {
      if (s == slot || !needed[s]) continue;
      std::array<OptTensor, 4> others;
      for (int k = 0; k < 4; k++) others[k] = k == s ? std::nullopt : optional(args[k]);
      grads[1 + s] = call_op(s, others[0], others[1], others[2], others[3], saved[4], saved[5],
                             optional(saved[6]), torch::scalar_tensor(rows[s], torch::kInt64),
                             saved[7], saved[8], dims);
    }
    return grads;
  }
};

Tensor uvu_conv_autograd(int64_t slot, const OptTensor &x, const OptTensor &y,
                         const OptTensor &w, const OptTensor &g, const Tensor &edge_src,
                         const Tensor &edge_dst, const OptTensor &row, const Tensor &num_out,
                         const Tensor &entries, const Tensor &coefficients,
                         c10::IntArrayRef dims)
{
  return UvuConv::apply(slot, x, y, w, g, edge_src, edge_dst, row, num_out, entries,
                        coefficients, dims);
}

// whether this plugin defines the op (false: the process had it already)
const bool defined_here =
    !c10::Dispatcher::singleton().findSchema({kOp, ""}).has_value();

}    // namespace

TORCH_LIBRARY_FRAGMENT(euclidnn, m)
{
  if (defined_here) m.def(kSchema);
}

TORCH_LIBRARY_IMPL(euclidnn, CPU, m)
{
  if (defined_here) m.impl("uvu_conv", &uvu_conv_cpu);
}

TORCH_LIBRARY_IMPL(euclidnn, Autograd, m)
{
  if (defined_here) m.impl("uvu_conv", &uvu_conv_autograd);
}
