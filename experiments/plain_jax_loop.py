import jax, jax.numpy as jnp, optax
from mnist1d.data import get_dataset_args, make_dataset
from bll_jax import losses

data = make_dataset(get_dataset_args())                   # MNIST-1D, generated offline
x, y = jnp.asarray(data["x"], jnp.float32), jnp.asarray(data["y"])
k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
params = [jax.random.normal(k1, (40, 256)) * 40**-0.5, jax.random.normal(k2, (256, 10)) * 0.06]
feedback = jax.random.normal(k3, (10, 256))               # fixed random feedback b(y) = B onehot(y)
block_losses = [  # block 1: Gaussian latent, target-normalised local loss; block 2: the task loss
    lambda w, h: losses.local_loss("gaussian", jnp.tanh(h @ w), feedback, y).mean(),
    lambda w, h: optax.softmax_cross_entropy_with_integer_labels(h @ w, y).mean()]
opt = optax.adam(1e-3)
opt_states = [opt.init(w) for w in params]

@jax.jit
def step(params, opt_states):
    h1 = jax.lax.stop_gradient(jnp.tanh(x @ params[0]))   # no gradient crosses the block boundary
    grads = [jax.grad(loss)(w, h) for loss, w, h in zip(block_losses, params, [x, h1])]
    updates = [opt.update(g, s) for g, s in zip(grads, opt_states)]
    return [optax.apply_updates(w, u) for w, (u, _) in zip(params, updates)], [s for _, s in updates]

for _ in range(1000):
    params, opt_states = step(params, opt_states)
x_test = jnp.asarray(data["x_test"], jnp.float32)
accuracy = jnp.mean(jnp.argmax(jnp.tanh(x_test @ params[0]) @ params[1], -1) == data["y_test"])
print(f"test accuracy {accuracy:.3f}")
