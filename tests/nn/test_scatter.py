"""scatter_sum / scatter_mean against explicit loops; gradients; compile."""

import torch

from euclidnn.nn import scatter_mean, scatter_sum


def test_scatter_sum_and_mean_match_loops():
    src = torch.randn(50, 3, 4, dtype=torch.float64)
    index = torch.randint(0, 7, (50,))
    index[index == 6] = 5  # leave row 6 empty: it must come out as 0
    total, mean = scatter_sum(src, index, dim_size=8), scatter_mean(src, index, dim_size=8)
    for i in range(8):
        rows = src[index == i]
        torch.testing.assert_close(total[i], rows.sum(0))
        torch.testing.assert_close(
            mean[i], rows.mean(0) if len(rows) else torch.zeros(3, 4, dtype=torch.float64)
        )


def test_scatter_along_other_dim_and_gradient():
    src = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 1, 1, 2, 2, 2, 0, 0, 1, 3])
    out = scatter_sum(src, index, dim_size=4, dim=1)
    torch.testing.assert_close(out[:, 2], src[:, 3:6].sum(1))
    (out * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(src.grad, index.to(torch.float64).expand(4, 10))


def test_compiles_without_graph_breaks():
    fn = torch.compile(lambda s, i: scatter_mean(s, i, dim_size=5), fullgraph=True, backend="eager")
    src, index = torch.randn(20, 2), torch.randint(0, 5, (20,))
    torch.testing.assert_close(fn(src, index), scatter_mean(src, index, dim_size=5))
