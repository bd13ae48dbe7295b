r"""Backprop pipelined one-forward-one-backward (1F1B, PipeDream-Flush).

The same passes as :class:`~bll_jax.baselines.gpipe.GPipe`, the same
stages, transfers and update (backprop on the whole batch, once per step),
in another order (Narayanan et al., 2019; 2021): stage `s` of `S` runs
`w_s = min(S - 1 - s, M)` forwards to fill the pipeline, then alternates one
forward and one backward, oldest micro-batch first, then drains its last
`w_s` backwards:

    F_0 .. F_{w-1},  (F_{w+i}, B_i) for i < M - w,  B_{M-w} .. B_{M-1}

A backward frees its micro-batch's stage input, so stage `s` holds at most
`w_s + 1 <= S - s` inputs at once instead of GPipe's `M` (measured by
:attr:`peak_inputs`, tested); the bubble is the same `(S - 1) / (M + S - 1)`
of every step. Gradients are summed in micro-batch order (GPipe sums in
reverse), so the two agree to float32 rounding.
"""

from __future__ import annotations

from bll_jax.baselines.gpipe import GPipe


class OneFOneB(GPipe):
  """1F1B backprop of a `bp` engine over the stages of a mesh."""

  def orders(self, num_micro: int) -> list[list[tuple[str, int]]]:
    """Per stage: warm-up forwards, one forward one backward, drain."""
    out = []
    for s in range(self.num_stages):
      warm = min(self.num_stages - 1 - s, num_micro)
      order = [("F", m) for m in range(warm)]
      for i in range(num_micro - warm):
        order += [("F", warm + i), ("B", i)]
      order += [("B", m) for m in range(num_micro - warm, num_micro)]
      out.append(order)
    return out
