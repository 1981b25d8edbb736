"""The FastMIM decoder: Linear(C_enc -> d) -> depth ViT blocks (heads d / 32) -> LayerNorm -> Linear(d -> D).

No position embedding is added (ggjy/FastMIM.pytorch ``forward_decoder``). Sizes per backbone
(README commands): ViT-B 256-d x 1 block, Swin-B 256-d x 4 blocks; a 0-depth decoder is
LayerNorm + Linear on the encoder tokens.
"""
from mindspore import nn

from mindcv_ext.models.vit import Block


class DecoderConfigError(ValueError):
    """Decoder sizes that do not fit together."""


class MIMDecoder(nn.Cell):
    def __init__(self, in_dim: int, dim: int, depth: int, out_dim: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, norm_eps: float = 1e-6):
        super().__init__()
        if depth < 0 or out_dim < 1 or in_dim < 1:
            raise DecoderConfigError(f"MIMDecoder: bad sizes in_dim={in_dim}, depth={depth}, out_dim={out_dim}")
        self.depth = depth
        if depth > 0:
            heads = max(1, dim // 32)  # official: decoder_num_heads = int(decoder_embed_dim / 32)
            if dim % heads:
                raise DecoderConfigError(f"MIMDecoder: dim {dim} is not divisible by {heads} heads")
            self.decoder_embed = nn.Dense(in_dim, dim)
            self.decoder_blocks = nn.SequentialCell([Block(dim, heads, mlp_ratio, qkv_bias, 0.0, norm_eps)
                                                     for _ in range(depth)])
            width = dim
        else:
            width = in_dim
        self.decoder_norm = nn.LayerNorm((width,), epsilon=norm_eps)
        self.decoder_pred = nn.Dense(width, out_dim)

    def construct(self, x):
        if self.depth > 0:
            x = self.decoder_blocks(self.decoder_embed(x))
        return self.decoder_pred(self.decoder_norm(x))
