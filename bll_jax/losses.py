r"""The pure block-local losses: functions of arrays, no model objects.

Notation (see `docs/theory.md`): block `k` emits forward natural parameters
`eta_fwd = a_k(x)`, shape `[..., P]`; the feedback network emits one row of
backward natural parameters per class, `eta_fb = [b_k(y) for y in classes]`,
shape `[C, P]`; `labels` are integer targets of shape `[...]` (a batch of
examples, or a batch of token sequences `[batch, time]`).

Which arguments receive gradients is part of each function's contract:

=================================  ===============  =================
function                           grad reaches     stop-gradient inside
=================================  ===============  =================
:func:`local_logits`               both             none
:func:`local_loss`                 ``eta_fwd``      ``eta_fb``
:func:`feedback_discriminative_loss` ``eta_fb``     ``eta_fwd``
:func:`feedback_ml_loss`           ``eta_fb``       ``eta_fwd``
:func:`batch_decorrelation_loss`   ``features``     none
:func:`denoising_loss`             ``out_noisy``    ``out_clean``
=================================  ===============  =================

Detaching a block's *input* (so no gradient crosses a block boundary) is the
caller's job: these functions only see the block's outputs.

Every loss returns one value per example (shape of `labels`, or the batch
shape); reduce it with a mean, a mask, or a sum as the task needs.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from bll_jax import _checks
from bll_jax import families as families_lib

Array = jax.Array
FamilyLike = families_lib.Family | str


# ------------------------------------------------------------------ checking


def _check_local_args(family, eta_fwd, eta_fb, labels=None, position_ndim=0):
  """Checks and flattens: returns family, `[N, S, P]`, fb, `[N]`, shapes."""
  family = families_lib.get(family)
  eta_fwd = family.check("eta_fwd", eta_fwd)
  eta_fb = family.check("eta_fb", eta_fb)
  _checks.same_dtype(("eta_fwd", "eta_fb"), eta_fwd, eta_fb)
  if (not isinstance(position_ndim, int) or position_ndim < 0
      or position_ndim > eta_fwd.ndim - 1):
    raise ValueError(
        f"position_ndim must be an integer in [0, {eta_fwd.ndim - 1}] for "
        f"eta_fwd of shape {eta_fwd.shape}, got {position_ndim!r}")
  batch_ndim = eta_fwd.ndim - 1 - position_ndim
  batch_shape = eta_fwd.shape[:batch_ndim]
  num_params = eta_fwd.shape[-1]
  shared = eta_fb.ndim == 2
  if eta_fb.shape[-1] != num_params or not (
      shared or eta_fb.shape[:-2] == batch_shape):
    raise ValueError(
        f"eta_fb must have shape [num_classes, {num_params}] (one row of "
        f"feedback parameters per class) or {list(batch_shape)} + "
        f"[num_classes, {num_params}] (per example), matching eta_fwd "
        f"{eta_fwd.shape}, got {eta_fb.shape}")
  num_classes = eta_fb.shape[-2]
  if labels is not None:
    labels = _checks.integer_labels("labels", labels, batch_shape, num_classes)
    labels = labels.reshape(-1)
  flat = eta_fwd.reshape((-1, math.prod(eta_fwd.shape[batch_ndim:-1]),
                          num_params))
  if not shared:
    eta_fb = eta_fb.reshape((-1,) + eta_fb.shape[-2:])
  return family, flat, eta_fb, labels, batch_shape


def _check_temperature(temperature):
  if not (isinstance(temperature, (int, float)) and temperature > 0
          and math.isfinite(temperature)):
    raise ValueError(f"temperature must be a positive float, got {temperature!r}")


def _check_chunk_size(chunk_size):
  if chunk_size is not None and (not isinstance(chunk_size, int)
                                 or chunk_size < 1):
    raise ValueError(
        f"chunk_size must be None or a positive integer, got {chunk_size!r}")


# ------------------------------------------------------------ class scores


def _chunks(eta_fb, chunk_size):
  """Splits the class axis (-2) into chunks, padded; puts the chunks first.

  Returns `(chunks [n, ..., chunk, P], valid [n, chunk])`.
  """
  num_classes = eta_fb.shape[-2]
  n = -(-num_classes // chunk_size)
  pad = n * chunk_size - num_classes
  # Edge padding keeps padded rows valid parameters (zeros are not, for
  # GaussianLearnedVariance); they are masked out of every score anyway.
  widths = [(0, 0)] * (eta_fb.ndim - 2) + [(0, pad), (0, 0)]
  padded = jnp.pad(eta_fb, widths, mode="edge")
  padded = padded.reshape(eta_fb.shape[:-2] + (n, chunk_size,
                                               eta_fb.shape[-1]))
  valid = jnp.arange(n * chunk_size) < num_classes
  return jnp.moveaxis(padded, -3, 0), valid.reshape(n, chunk_size)


def _scores_logsumexp(family, flat, eta_fb, temperature, chunk_size):
  """`logsumexp_c score(c) / T` for flat `[N, S, P]` forward parameters."""
  if chunk_size is None or chunk_size >= eta_fb.shape[-2]:
    return jax.nn.logsumexp(family.summed_scores(flat, eta_fb) / temperature,
                            -1)

  fb_chunks, valid = _chunks(eta_fb, chunk_size)

  # Rematerialised, so reverse mode keeps only each chunk's inputs and the
  # [N, S, chunk, P] intermediates of one chunk exist at a time.
  @jax.checkpoint
  def chunk_lse(args):
    fb_c, valid_c = args
    scores = family.summed_scores(flat, fb_c) / temperature
    return jax.nn.logsumexp(jnp.where(valid_c, scores, -jnp.inf), -1)

  return jax.nn.logsumexp(jax.lax.map(chunk_lse, (fb_chunks, valid)), 0)


def _label_rows(eta_fb, labels):
  """The feedback parameters of each example's own class, `[N, P]`.

  Labels outside `[0, C)` give NaN rows (so a NaN loss) instead of the
  clamped gather JAX would do: under `jit` they cannot be refused.
  """
  num_classes = eta_fb.shape[-2]
  valid = (labels >= 0) & (labels < num_classes)
  index = jnp.clip(labels, 0, num_classes - 1)
  if eta_fb.ndim == 2:
    rows = eta_fb[index]
  else:
    rows = jnp.take_along_axis(eta_fb, index[:, None, None], 1)[:, 0]
  return jnp.where(valid[:, None], rows, jnp.array(jnp.nan, rows.dtype))


def local_logits(family: FamilyLike, eta_fwd, eta_fb, *,
                 temperature: float = 1.0,
                 chunk_size: int | None = None,
                 position_ndim: int = 0) -> Array:
  r"""Block `k`'s own class scores, the logits of `q(y | alpha_k)`.

  .. math::

     \log q(y \mid \alpha_k) = \mathrm{log\_softmax}_y \big[
        \tfrac{1}{T} \log \textstyle\sum_z \alpha_k(z)\, \tilde\beta_{k,y}(z)
     \big],

  with `alpha_k = p(. | eta_fwd)` and `beta~_{k,y} = p(. | eta_fb[y])`. For
  base measure 1 the score is `A(a + b_y) - A(a) - A(b_y)`, and `-A(a)` is
  common to all `y`. Gradients reach both arguments.

  Args:
    family: a :class:`~bll_jax.families.Family` or its name.
    eta_fwd: forward natural parameters, `[*batch, *positions, P]`.
    eta_fb: feedback natural parameters for every class, `[C, P]`, or per
      example `[*batch, C, P]` (posterior bootstrapping).
    temperature: `T > 0`, divides the scores.
    chunk_size: classes scored at a time (`None`: all). Bounds the memory
      of the generic families to `[N, S, chunk_size, P]`.
    position_ndim: how many axes before `P` are positions (e.g. 2 for the
      `H, W` of a feature map): all units of a position share the class's
      feedback parameters and their scores add.

  Returns:
    Logits of shape `[*batch, C]` (unnormalised; apply `log_softmax` for
    `log q(y | alpha_k)`).

  Example:
    >>> import jax.numpy as jnp
    >>> from bll_jax import losses
    >>> logits = losses.local_logits("bernoulli", jnp.zeros((4, 8)),
    ...                              jnp.ones((3, 8)))
    >>> logits.shape
    (4, 3)
  """
  family, flat, eta_fb, _, batch_shape = _check_local_args(
      family, eta_fwd, eta_fb, position_ndim=position_ndim)
  _check_temperature(temperature)
  _check_chunk_size(chunk_size)
  num_classes = eta_fb.shape[-2]
  if chunk_size is None or chunk_size >= num_classes:
    scores = family.summed_scores(flat, eta_fb)
  else:
    fb_chunks, _ = _chunks(eta_fb, chunk_size)
    per_chunk = jax.lax.map(lambda fb_c: family.summed_scores(flat, fb_c),
                            fb_chunks)                       # [n, N, chunk]
    scores = jnp.moveaxis(per_chunk, 0, 1).reshape(flat.shape[0], -1)
    scores = scores[:, :num_classes]
  return (scores / temperature).reshape(batch_shape + (num_classes,))


def _neg_log_q(family, flat, eta_fb, labels, batch_shape, temperature,
               chunk_size):
  """`-log q(labels | alpha)` without stop-gradients; arguments checked."""
  own = _label_rows(eta_fb, labels)[:, None, :]               # [N, 1, P]
  score_y = jnp.sum(family.raw_log_agreement(flat, own), 1) / temperature
  lse = _scores_logsumexp(family, flat, eta_fb, temperature, chunk_size)
  return (lse - score_y).reshape(batch_shape)


# -------------------------------------------------------------- the losses


def local_loss(family: FamilyLike, eta_fwd, eta_fb, labels, *,
               temperature: float = 1.0,
               chunk_size: int | None = None,
               position_ndim: int = 0) -> Array:
  r"""The forward loss of a block: `L_k = -log q(y | alpha_k)`.

  .. math::

     L_k = -\frac{s_y}{T} + \log \sum_{y'} \exp\frac{s_{y'}}{T}, \qquad
     s_y = \log \textstyle\sum_z \alpha_k(z)\, \tilde\beta_{k,y}(z)
         = A(a_k + b_y) - A(a_k) - A(b_y)\ \text{(base measure 1)}.

  The target-normalised agreement: Bayes' rule over the targets with a
  generative feedback model `q(z_k | y) = beta~_{k,y}`. It does not collapse,
  unlike the agreement normalised over `z` alone. Special cases: a
  :class:`~bll_jax.families.Gaussian` gives a nearest-prototype softmax
  classifier with prototypes `s2 * eta_fb` and logits
  `-|mu_a - mu_y|^2 / (4 s2 T)`; a one-group
  :class:`~bll_jax.families.Categorical` with feedback `s * one_hot(y)` tends
  to plain cross-entropy on `eta_fwd` as `s -> inf`.

  Gradients reach `eta_fwd` only (`eta_fb` is stop-gradient'ed inside; train
  the feedback with :func:`feedback_ml_loss` or
  :func:`feedback_discriminative_loss`).

  Args:
    family: a :class:`~bll_jax.families.Family` or its name.
    eta_fwd: forward natural parameters, `[*batch, *positions, P]`:
      `[batch, P]`; `[batch, time, P]` for token targets; `[batch, H, W, C]`
      for a feature map with `position_ndim=2`.
    eta_fb: feedback natural parameters of every class, `[C, P]`, or per
      example, `[*batch, C, P]` (posterior bootstrapping).
    labels: integer targets of shape `batch`, in `[0, C)`. Refused with
      `ValueError` when concrete; under `jit` an out-of-range label gives a
      NaN loss for its example (never a silently clamped class).
    temperature: `T > 0`, divides the scores.
    chunk_size: classes scored at a time (`None`: all at once). With a large
      vocabulary the generic families then never hold `[N, C, P]`: chunks are
      rematerialised in the backward pass, so memory is `O(N * chunk * P)`.
    position_ndim: how many axes before `P` are positions whose units share
      the class's feedback parameters; their scores add (the latent of a
      feature map factorises over positions and channels).

  Returns:
    The loss per example, shape `labels.shape`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bll_jax import losses
    >>> eta_fwd = jax.random.normal(jax.random.key(0), (32, 16))
    >>> eta_fb = jax.random.normal(jax.random.key(1), (10, 16))
    >>> labels = jnp.arange(32) % 10
    >>> losses.local_loss("gaussian", eta_fwd, eta_fb, labels).shape
    (32,)
  """
  family, flat, eta_fb, labels, batch_shape = _check_local_args(
      family, eta_fwd, eta_fb, labels, position_ndim)
  _check_temperature(temperature)
  _check_chunk_size(chunk_size)
  return _neg_log_q(family, flat, jax.lax.stop_gradient(eta_fb), labels,
                    batch_shape, temperature, chunk_size)


def feedback_discriminative_loss(family: FamilyLike, eta_fwd, eta_fb, labels, *,
                                 temperature: float = 1.0,
                                 chunk_size: int | None = None,
                                 position_ndim: int = 0) -> Array:
  r"""The discriminative feedback loss: :func:`local_loss` seen from `phi_k`.

  .. math::

     L^{disc}_k = -\log q(y \mid \mathrm{sg}[\alpha_k])
       = -\tfrac{1}{T} s_y + \operatorname{logsumexp}_{y'} \tfrac{1}{T} s_{y'},
     \qquad s_y = \log \textstyle\sum_z \mathrm{sg}[\alpha_k](z)\,
                   \tilde\beta_{k,y}(z; \phi_k),

  the same value `-log q(y | alpha_k)`, with the gradient reaching `eta_fb`
  only (`eta_fwd` is stop-gradient'ed inside): the feedback learns class
  parameters under which the detached forward messages classify well.

  Args and Returns: as :func:`local_loss`.
  """
  family, flat, eta_fb, labels, batch_shape = _check_local_args(
      family, eta_fwd, eta_fb, labels, position_ndim)
  _check_temperature(temperature)
  _check_chunk_size(chunk_size)
  return _neg_log_q(family, jax.lax.stop_gradient(flat), eta_fb, labels,
                    batch_shape, temperature, chunk_size)


def feedback_ml_loss(family: FamilyLike, eta_fwd, eta_fb, labels, *,
                     position_ndim: int = 0) -> Array:
  r"""Maximum likelihood of the generative feedback `q(z_k | y)`.

  .. math::

     L^{fb}_k = H(\alpha_k, \tilde\beta_{k,y})
              = -\mathbb{E}_{z \sim \alpha_k}[\log \tilde\beta_{k,y}(z)]
              = A(b_y) - \langle \mu(a_k), b_y \rangle
                - \mathbb{E}_{\alpha_k}[\log h(z)].

  The last term does not depend on `b_y`. Minimising over `b_y` moves the
  class's feedback distribution onto the forward messages of that class: for
  a Gaussian, `s2 * b_y` goes to the class mean of `mu(a_k)` (a squared
  distance), for Bernoulli `sigmoid(b_y)` to the class mean of `sigmoid(a_k)`.

  Gradients reach `eta_fb` only (`eta_fwd` is stop-gradient'ed inside).

  Args:
    family: a :class:`~bll_jax.families.Family` or its name.
    eta_fwd: forward natural parameters, `[*batch, *positions, P]`.
    eta_fb: feedback natural parameters of every class, `[C, P]` or
      `[*batch, C, P]`.
    labels: integer targets of shape `batch`.
    position_ndim: as in :func:`local_loss`; the cross-entropies of all
      positions add.

  Returns:
    The cross-entropy per example, shape `labels.shape`.
  """
  family, flat, eta_fb, labels, batch_shape = _check_local_args(
      family, eta_fwd, eta_fb, labels, position_ndim)
  own = _label_rows(eta_fb, labels)[:, None, :]
  ce = family.raw_cross_entropy(jax.lax.stop_gradient(flat), own)   # [N, S]
  return jnp.sum(ce, 1).reshape(batch_shape)


# ------------------------------------------------------- token targets


def shifted_targets(labels, weights, offsets: Sequence[int]
                    ) -> tuple[Array, Array]:
  r"""Each position's target shifted by each of `offsets` along time.

  In a causal sequence model the latent of position `t` feeds (through
  attention) every later prediction, so it is a parent of `y_{t+1}`,
  `y_{t+2}`, ...; it has also read the tokens `x_t, x_{t-1}`, ...
  (`docs/theory.md`, section 6, "Token targets"). With
  `labels[..., t] = y_{t+1} = x_{t+1}`, offset `o` gives position `t` the
  token `labels[t + o]` (`o = 0`: the next token; `o = 1`: the one after;
  `o = -1`: the current token `x_t`), and whether it exists:

  .. math::

     y^{(o)}_t = \text{labels}_{t+o}, \qquad
     m^{(o)}_t = [\,0 \le t + o < T\ \text{and}\ \text{weights}_{t+o} > 0\,].

  A target outside the window (or of zero weight: padding) gets label 0 and
  `m = 0`; for `o = 0`, `weights * m = weights`.

  Args:
    labels: integer targets `[..., T]`.
    weights: their weights, same shape.
    offsets: integer shifts, each in `(-T, T)`.

  Returns:
    `(labels, valid)` of shape `[len(offsets), ..., T]`, `valid` the 0/1
    `m` (float).
  """
  labels = jnp.asarray(labels)
  weights = jnp.asarray(weights)
  _checks.same_shape(("labels", "weights"), labels, weights)
  if labels.ndim < 1:
    raise ValueError(f"labels must end in a time axis, got shape {labels.shape}")
  length = labels.shape[-1]
  offsets = tuple(offsets)
  if not offsets or any(not isinstance(o, int) or abs(o) >= length
                        for o in offsets):
    raise ValueError(f"offsets must be integers in ({-length}, {length}) "
                     f"(the window holds {length} tokens), got {offsets!r}")
  present = (weights > 0).astype(weights.dtype)

  def shift(x, o):
    pad = [(0, 0)] * (x.ndim - 1)
    if o >= 0:
      return jnp.pad(x[..., o:], pad + [(0, o)])
    return jnp.pad(x[..., :length + o], pad + [(-o, 0)])
  return (jnp.stack([shift(labels, o) for o in offsets]),
          jnp.stack([shift(present, o) for o in offsets]))


# --------------------------------------------------- optional regularisers


def batch_decorrelation_loss(features, *, eps: float = 1e-6) -> Array:
  r"""Mean squared cosine similarity between different examples of a batch.

  .. math::

     \hat x_i = \frac{x_i - \bar x_i}{\lVert x_i - \bar x_i \rVert}, \quad
     L = \frac{1}{N(N-1)} \sum_{i \ne j} (\hat x_i \cdot \hat x_j)^2,

  with `bar x_i` the mean of `x_i` over its features (the authors' recipe:
  centred over channels, L2-normalised, off-diagonal of `x^ x^T`). An
  optional helper against collapse, never on by default. Gradients reach
  `features`.

  Args:
    features: `[N, D]` with `N >= 2`.
    eps: added to the norm.

  Returns:
    A scalar.
  """
  features = _checks.floating("features", features)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(
        f"features must have shape [batch >= 2, features], got {features.shape}")
  centred = features - jnp.mean(features, -1, keepdims=True)
  xn = centred / (jnp.linalg.norm(centred, axis=-1, keepdims=True) + eps)
  gram = xn @ xn.T
  n = features.shape[0]
  off_diagonal = jnp.sum(jnp.square(gram)) - jnp.sum(jnp.square(jnp.diag(gram)))
  return off_diagonal / (n * (n - 1))


def denoising_loss(out_noisy, out_clean) -> Array:
  r"""`mean_j (f(h + eps)_j - sg[f(h)]_j)^2`: a block should ignore small noise.

  The caller applies the block to its input with and without noise; the clean
  output is the (stop-gradient'ed) target. Gradients reach `out_noisy`.

  Args:
    out_noisy: block output on the perturbed input, `[..., D]`.
    out_clean: block output on the clean input, same shape.

  Returns:
    The mean squared difference per example, shape `[...]`.
  """
  out_noisy = _checks.floating("out_noisy", out_noisy)
  out_clean = _checks.floating("out_clean", out_clean)
  _checks.at_least_1d("out_noisy", out_noisy)
  _checks.same_shape(("out_noisy", "out_clean"), out_noisy, out_clean)
  return jnp.mean(
      jnp.square(out_noisy - jax.lax.stop_gradient(out_clean)), -1)
