"""Decoder-only causal Transformer language model with pre-LayerNorm blocks.

Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
https://arxiv.org/abs/1706.03762 (multi-head scaled dot-product attention), with the pre-LN
residual ordering of GPT-2 (Radford et al. 2019) and Xiong et al., "On Layer Normalization in the
Transformer Architecture", ICML 2020, https://arxiv.org/abs/2002.04745.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.models._checks import check_positive_int, check_rate

_EMBED_INIT = nn.initializers.normal(stddev=0.02)


class _DecoderBlock(nn.Module):
    """x + Drop(MHA(LN(x), causal)), then x + Drop(W_2 GELU(W_1 LN(x)))."""

    d_model: int
    num_heads: int
    mlp_ratio: int
    dropout_rate: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="ln1")(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            qkv_features=self.d_model,
            dropout_rate=self.dropout_rate,
            deterministic=not train,
            dtype=self.dtype,
            force_fp32_for_softmax=True,
            name="attn",
        )(h, mask=mask)
        x = x + nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="ln2")(x)
        h = nn.gelu(nn.Dense(self.mlp_ratio * self.d_model, dtype=self.dtype, name="mlp_in")(h))
        h = nn.Dense(self.d_model, dtype=self.dtype, name="mlp_out")(h)
        return x + nn.Dropout(self.dropout_rate, deterministic=not train)(h)


class TransformerLM(nn.Module):
    """Causal pre-LN Transformer language model returning next-token logits.

    h_0 = Drop(E[x_t] + P[t]);  h_l = block_l(h_{l-1}) with
    block(h) = h' + Drop(MLP(LN(h'))),  h' = h + Drop(MHA(LN(h)) with causal mask j <= t);
    logits = LN(h_L) W_out + b_out.  MHA is softmax(Q Kᵀ / √d_head + mask) V per head;
    MLP is Dense(mlp_ratio·d_model) → GELU (tanh approximation) → Dense(d_model).
    Token and learned positional embeddings are initialised N(0, 0.02²); the output head is untied.
    The logit at position t depends only on tokens 0..t.

    Attributes:
      vocab_size: number of tokens (and of logits per position).
      d_model: residual stream width; must be divisible by ``num_heads``.
      num_heads: attention heads.
      num_layers: decoder blocks.
      mlp_ratio: hidden width of the MLP as a multiple of ``d_model``.
      max_len: longest sequence (size of the positional embedding table).
      dropout_rate: dropout on embeddings, attention weights and residual branches (rng stream
        ``"dropout"``, active only with ``train=True``).
      dtype: computation dtype (e.g. ``jnp.bfloat16``; the softmax is always float32); parameters
        stay float32.

    Returns (``__call__``):
      float32 logits ``[batch, T, vocab_size]`` for integer tokens ``[batch, T]``, T <= max_len.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = TransformerLM(vocab_size=11, d_model=8, num_heads=2, num_layers=1, max_len=6)
      >>> tokens = jnp.zeros((2, 5), jnp.int32)
      >>> variables = jax.eval_shape(model.init, jax.random.key(0), tokens)
      >>> logits = jax.eval_shape(model.apply, variables, tokens)
      >>> logits.shape, logits.dtype
      ((2, 5, 11), dtype('float32'))
    """

    vocab_size: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    mlp_ratio: int = 4
    max_len: int = 256
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "mlp_ratio", "max_len"):
            check_positive_int(name, getattr(self, name))
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                "d_model must be divisible by num_heads, got "
                f"d_model={self.d_model}, num_heads={self.num_heads}"
            )
        check_rate("dropout_rate", self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(
                f"TransformerLM expects integer tokens [batch, T], got x.shape={x.shape}, "
                f"x.dtype={x.dtype}"
            )
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len}")
        tok = nn.Embed(
            self.vocab_size, self.d_model, embedding_init=_EMBED_INIT, dtype=self.dtype, name="wte"
        )(x)
        pos = self.param("wpe", _EMBED_INIT, (self.max_len, self.d_model), jnp.float32)
        h = tok + pos[None, :length, :].astype(self.dtype)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        mask = nn.make_causal_mask(x)
        for layer in range(self.num_layers):
            h = _DecoderBlock(
                d_model=self.d_model,
                num_heads=self.num_heads,
                mlp_ratio=self.mlp_ratio,
                dropout_rate=self.dropout_rate,
                dtype=self.dtype,
                name=f"block{layer + 1}",
            )(h, mask, train)
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="ln_f")(h)
        logits = nn.Dense(self.vocab_size, dtype=self.dtype, name="head")(h)
        return logits.astype(jnp.float32)
