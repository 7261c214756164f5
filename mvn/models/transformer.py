"""Pre-norm transformer pieces used by the lifting head (ViT style; names match its checkpoints)."""
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability p
    and rescale the kept ones by 1/(1-p). A sample is one index of the first dimension."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self):
        return 'p=%g' % self.p


def drop_path_or_identity(p):
    # An identity for p = 0 keeps the module tree identical to the official one.
    return DropPath(p) if p > 0 else nn.Identity()


class Mlp(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last dimension of (N, T, dim)."""

    def __init__(self, dim, num_heads=8, qkv_bias=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError('attention dim %d is not divisible by num_heads %d' % (dim, num_heads))
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, dim = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                       # (n, heads, t, head_dim)
        # Explicit softmax attention, scaled after the product as in the released model, so
        # that outputs match it to the last bit (a fused kernel would reorder the arithmetic).
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(n, t, dim)
        return self.proj(out)


class Block(nn.Module):
    """x + attn(norm1(x)), then + mlp(norm2(x)), each branch behind stochastic depth."""

    def __init__(self, dim, num_heads, mlp_ratio=2.0, qkv_bias=True, drop_path=0.0, norm_eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

