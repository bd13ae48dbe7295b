import jax, jax.numpy as jnp, optax
from mnist1d.data import get_dataset_args, make_dataset
from bll_jax import losses

d = make_dataset(get_dataset_args())                      # MNIST-1D, generated offline
x, y = jnp.asarray(d["x"], jnp.float32), jnp.asarray(d["y"])
k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
params = (jax.random.normal(k1, (40, 256)) * 40**-0.5, jax.random.normal(k2, (256, 10)) * 0.06)
feedback = jax.random.normal(k3, (10, 256))               # fixed random feedback: class y -> feedback[y]

def loss(params):  # block 1: Gaussian latent, local loss; block 2: the task loss; no gradient crosses
    h = jnp.tanh(x @ params[0])
    task = optax.softmax_cross_entropy_with_integer_labels(jax.lax.stop_gradient(h) @ params[1], y)
    return losses.local_loss("gaussian", h, feedback, y).mean() + task.mean()

opt = optax.adam(1e-3)                                    # per-parameter state: each block's is its own
state = opt.init(params)
step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p), s, p))
for _ in range(1000):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
h_test = jnp.tanh(jnp.asarray(d["x_test"], jnp.float32) @ params[0])
print(f"test accuracy {jnp.mean(jnp.argmax(h_test @ params[1], -1) == d['y_test']):.3f}")
