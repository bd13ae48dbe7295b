"""Networks as cuttable layer stacks: MLP, CNN, ResNet-18/34/50, Transformer,
and your own (stock flax linen layers, NNX modules: :mod:`.units`,
`--model.factory`: :mod:`.factory`).

:func:`build` makes the network a config names, sized for a dataset.
"""

from __future__ import annotations

from bll_jax.models import factory
from bll_jax.models.base import LayerStack
from bll_jax.models.cnn import cnn
from bll_jax.models.mlp import mlp
from bll_jax.models.resnet import resnet
from bll_jax.models.resnet import stage_cuts
from bll_jax.models.transformer import transformer
from bll_jax.models.units import as_stack
from bll_jax.models.units import as_unit
from bll_jax.models.units import from_units

MODELS = ("mlp", "cnn", "resnet18", "resnet34", "resnet50", "transformer")


def build(model_config, num_classes: int, input_shape: tuple[int, ...],
          input_dtype: str = "float32", token_targets: bool = False
          ) -> LayerStack:
  """The network named by `model_config.name`, or made by the user's
  function `model_config.factory` (:mod:`bll_jax.models.factory`).

  Args:
    model_config: a ConfigDict (or any object with attributes) with `name`
      and that model's fields (see `bll_jax.config.schema`).
    num_classes: classes, or the vocabulary size for token targets.
    input_shape: one example's shape: `(L,)` signals or tokens, `(H, W, C)`
      images.
    input_dtype, token_targets: the inputs' dtype and whether labels are
      per token (what a factory's network is checked against).

  Raises:
    ValueError: for an unknown model name, or a factory that fails (one
      line).
  """
  if getattr(model_config, "factory", ""):
    return factory.build(model_config.factory, num_classes, input_shape,
                         input_dtype, token_targets)
  name = model_config.name
  if name == "mlp":
    return mlp(tuple(model_config.widths), num_classes)
  if name == "cnn":
    spatial_ndim = 1 if len(input_shape) == 1 else len(input_shape) - 1
    return cnn(tuple(model_config.channels), tuple(model_config.kernels),
               tuple(model_config.strides), num_classes, spatial_ndim,
               norm=model_config.norm, head=model_config.head)
  if name.startswith("resnet") and name in MODELS:
    return resnet(int(name[len("resnet"):]), num_classes, model_config.stem,
                  int(model_config.width))
  if name == "transformer":
    return transformer(model_config.num_layers, model_config.d_model,
                       model_config.num_heads, model_config.mlp_dim,
                       num_classes, input_shape[0], model_config.dropout)
  raise ValueError(f"model.name must be one of {MODELS}, got {name!r}")


__all__ = ["LayerStack", "MODELS", "as_stack", "as_unit", "build", "cnn",
           "factory", "from_units", "mlp", "resnet", "stage_cuts",
           "transformer"]
