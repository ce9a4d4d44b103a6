// Argument checks shared by the custom ops compiled into the LAMMPS plugin (euclidnn_ops.cpp,
// schnet_op.cpp): c10 errors naming the op and the argument, never a crash.
#pragma once

#include <torch/script.h>

#include <cstdint>

namespace euclidnn {

// a contiguous int64 copy of 1-d indices of length `length` (-1: any), int32 converted, each in
// 0 ... size - 1 unless `check_range` is false (the caller's kernel checks them)
inline torch::Tensor index_tensor(const torch::Tensor &t, const char *op, const char *name,
                                  int64_t size, int64_t length, bool check_range = true)
{
  TORCH_CHECK_TYPE(t.scalar_type() == torch::kInt64 || t.scalar_type() == torch::kInt32, op,
                   ": ", name, " must be int64 or int32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && (length < 0 || t.size(0) == length), op, ": ", name,
                    " must have shape [", length, "], got ", t.sizes());
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " must be on the CPU");
  torch::Tensor c = t.to(torch::kInt64).contiguous();
  if (check_range && c.numel() > 0) {
    auto [low, high] = torch::aminmax(c);
    int64_t lo = low.item<int64_t>(), hi = high.item<int64_t>();
    TORCH_CHECK_INDEX(lo >= 0 && hi < size, op, ": ", name, " index ", lo < 0 ? lo : hi,
                      " is out of range for ", size, " rows");
  }
  return c;
}

}  // namespace euclidnn
