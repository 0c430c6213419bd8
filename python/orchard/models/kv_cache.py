"""Per-layer keys and values of the tokens a decoder has already seen, for incremental decoding."""
from .. import _core


class KVCache:
    """Keys and values [batch, heads, max_length, head_dim] per layer, allocated once and written in place.

    A forward pass over T new tokens writes each layer's keys and values at positions length..length+T-1
    (`update`) and then moves `length` on by T (`advance`), so a step costs no copy of the cache (transformers'
    StaticCache plays the same role). Pass it to the model as `past_key_values`, under orchard.no_grad(): it is
    for inference and keeps no autograd history."""

    def __init__(self, n_layer, batch_size, n_head, head_dim, max_length, *, dtype=_core.dtype.float32,
                 device=None):
        if max_length < 1:
            raise ValueError(f"KVCache: max_length must be at least 1, got {max_length}")
        shape = (batch_size, n_head, max_length, head_dim)
        self.keys = [_core.zeros(*shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [_core.zeros(*shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.max_length = max_length
        self.length = 0

    @classmethod
    def for_model(cls, model, batch_size, max_length):
        """An empty cache shaped for `model` (a GPT2), on its device and in its dtype."""
        c = model.config
        weight = model.transformer.wte.weight
        return cls(c.n_layer, batch_size, c.n_head, c.n_embd // c.n_head, max_length, dtype=weight.dtype,
                   device=weight.device)

    def update(self, layer, k, v):
        """Writes k, v [batch, heads, T, head_dim] after the cached tokens; returns that layer's keys and values
        over all length + T positions (views of the cache)."""
        T = k.shape[2]
        if self.length + T > self.max_length:
            raise ValueError(f"KVCache: {self.length} cached + {T} new tokens exceed max_length {self.max_length}")
        if k.requires_grad or v.requires_grad:
            raise RuntimeError("KVCache holds no gradients: run the forward passes that use it under orchard.no_grad()")
        keys, values = self.keys[layer], self.values[layer]
        if tuple(k.shape) != (keys.shape[0], keys.shape[1], T, keys.shape[3]):
            raise ValueError(f"KVCache: expected keys of shape ({keys.shape[0]}, {keys.shape[1]}, T, "
                             f"{keys.shape[3]}), got {tuple(k.shape)}")
        keys.narrow(2, self.length, T).copy_(k)
        values.narrow(2, self.length, T).copy_(v)
        end = self.length + T
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def advance(self, n):
        """Counts n more tokens as cached (after every layer's `update` of one forward pass)."""
        self.length += n

    def crop(self, length):
        """Forgets the tokens after the first `length` (0 empties the cache); their slots are overwritten later."""
        if not 0 <= length <= self.length:
            raise ValueError(f"KVCache.crop: length must be in 0..{self.length}, got {length}")
        self.length = length

