"""Test-set evaluation: the network's accuracy and every block's own.

For classification, `accuracy` is the output block's; `per_block_accuracy[k]`
is the accuracy of block `k`'s own prediction `argmax_y q(y | alpha_k)` (the
last entry is the output block; hidden entries are `None` for `bp`, which has
no feedback network), and `per_block_loss[k]` its cross-entropy
`-log q(y | alpha_k)`; `mixture_loss` and `mixture_accuracy` score the
equal-weight mixture of every block's prediction
(:func:`bll_jax.engine.predict.mixture_log_probs`; the output alone for
`bp`), an evaluation-only predictor, not the network's. For token targets,
the local accuracies are per target token with teacher forcing, and the
network is also decoded greedily: `accuracy` is then the greedy token
accuracy and `exact_match` the fraction of test sequences decoded without a
single error. For language modelling
(`task == "language"`), `loss` is in nats per token, `bits_per_token` is
`loss / ln 2`, and the accuracies are next-token accuracies;
:func:`greedy_text` continues a prompt.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bll_jax import engine as engine_lib


def evaluate(engine: engine_lib.Engine, state: engine_lib.TrainState, dataset,
             batch_size: int) -> dict[str, Any]:
  """Metrics over the whole test set (padding excluded)."""
  sums = None
  decoded_correct = decoded_tokens = exact = sequences = 0  # Python ints
  info = dataset.info
  if info.task == "sequence":
    length = info.metadata["source_length"]
    decode = engine.jit(("greedy_decode", length),
                        lambda: greedy_decoder(engine, length))
  for batch in dataset.test_batches(batch_size):
    out = jax.device_get(engine.eval_step(state, batch))
    sums = out if sums is None else jax.tree.map(np.add, sums, out)
    if info.task == "sequence":
      d = jax.device_get(decode(state, batch))
      decoded_correct += int(d["correct"])
      decoded_tokens += int(d["tokens"])
      exact += int(d["exact"])
      sequences += int(d["sequences"])
  weight = float(sums["weight"])

  def per_block(key):
    return [None if math.isnan(c) else float(c) / weight
            for c in np.asarray(sums[key], np.float64)]

  accuracies = per_block("correct")
  result = {"loss": float(sums["loss"]) / weight,
            "accuracy": accuracies[-1],
            "per_block_accuracy": accuracies,
            "per_block_loss": per_block("block_loss"),
            "mixture_loss": float(sums["mixture_loss"]) / weight,
            "mixture_accuracy": float(sums["mixture_correct"]) / weight}
  if info.task == "language":
    result["bits_per_token"] = result["loss"] / math.log(2.0)
    result["mixture_bits_per_token"] = result["mixture_loss"] / math.log(2.0)
  if info.task == "sequence":
    result["teacher_forced_accuracy"] = accuracies[-1]
    result["accuracy"] = float(decoded_correct) / max(float(decoded_tokens), 1.0)
    result["exact_match"] = float(exact) / max(float(sequences), 1.0)
  return result


def greedy_decoder(engine: engine_lib.Engine, source_length: int):
  """Greedy decoding of the target half of a sequence batch:
  `(state, batch) -> {"correct", "tokens", "exact", "sequences"}` sums.

  The inputs hold `[s_1..s_L, SEP, t_1..t_{L-1}]`; the target tokens are
  replaced by the model's own predictions, one position at a time (a causal
  model sees only the positions before), and compared with the labels.
  """
  length = source_length

  def decode(state, batch):
    inputs, labels, weights = batch["inputs"], batch["labels"], batch["weights"]
    tokens = inputs.at[:, length + 1:].set(0)

    def body(i, carry):
      tokens, preds = carry
      logits, _ = engine.predict(state, tokens)
      pred = jnp.argmax(logits[:, length + i], -1).astype(tokens.dtype)
      preds = preds.at[:, i].set(pred)
      nxt = jnp.minimum(length + 1 + i, tokens.shape[1] - 1)
      tokens = jnp.where(length + 1 + i < tokens.shape[1],
                         tokens.at[:, nxt].set(pred), tokens)
      return tokens, preds

    preds = jnp.zeros((inputs.shape[0], length), inputs.dtype)
    _, preds = jax.lax.fori_loop(0, length, body, (tokens, preds))
    targets = labels[:, length:2 * length]
    mask = weights[:, length:2 * length]
    correct = (preds == targets) * mask
    real = (jnp.sum(mask, -1) > 0).astype(jnp.float32)
    return {"correct": jnp.sum(correct), "tokens": jnp.sum(mask),
            "exact": jnp.sum(jnp.all((preds == targets) | (mask == 0), -1)
                             * real),
            "sequences": jnp.sum(real)}

  return decode


def greedy_text(engine: engine_lib.Engine, state: engine_lib.TrainState,
                prompt, length: int):
  """`length` tokens continuing `prompt` (int tokens, at least one), each
  the output block's most likely next token given the last `len(prompt)`
  tokens (a sliding window of the model's context). One compiled program,
  run `length` times."""
  window = jnp.asarray(prompt, jnp.int32)[None]
  if window.shape[1] < 1 or length < 0:
    raise ValueError(f"need a prompt of at least one token and length >= 0, "
                     f"got {window.shape[1]} tokens and length {length}")

  def step(state, window):
    logits, _ = engine.predict(state, window)
    token = jnp.argmax(logits[0, -1]).astype(window.dtype)
    return token, jnp.concatenate([window[:, 1:], token[None, None]], 1)

  run = engine.jit(("greedy_text", window.shape[1]), lambda: step)
  out = []
  for _ in range(length):
    token, window = run(state, window)
    out.append(token)
  return np.asarray(jax.device_get(out), np.int32)
