"""Input-level regularizers: Cutout and input dropout.

Both have placement ``"input"``: the blocks' slots stay empty and the model applies
the module once to the network input (B, C_in, H, W) before the first conv, in
training mode only (evaluation mode: the input tensor itself, no random numbers).
The segmentation labels are never touched. Randomness comes from torch's global
generator.

* ``cutout`` — DeVries & Taylor, *Improved Regularization of Convolutional Neural
  Networks with Cutout*, arXiv 1708.04552, 2017 (seed 004): for every image, zero
  ``holes`` squares of side ``s = max(1, round(size · min(H, W)))`` across all
  channels. Each square's centre ``(cy, cx)`` is uniform over the image and the
  square covers rows ``[cy − ⌊s/2⌋, cy − ⌊s/2⌋ + s)`` and the same columns, clipped to
  the image — the paper lets the patch extend past the border (so near the border
  less than ``s²`` pixels are zeroed), which it found important. No rescaling.
  Defaults: ``holes = 1``, ``size = 0.25`` (¼ of the side, as the paper's 8 px
  squares on 32 px CIFAR-100 images; it used 16 px, ½, on CIFAR-10).
* ``input_dropout`` — *Dropout Regularization for Automatic Segmented Dental Images*,
  ACIIDS 2021 (seed 001): a dropout layer between the input and the first hidden
  layer, rate 0.3. Keras' ``Dropout`` as used there is inverted dropout:
  ``y = x · m / (1 − p)``, ``m ~ Bernoulli(1 − p)`` i.i.d. per input pixel and channel.
  Default ``p = 0.3``.
"""

from __future__ import annotations

import torch

from ..checks import check_int, check_real
from .base import Regularizer
from .dropout import Dropout
from .registry import register


def cutout_mask(batch: int, sizes: tuple[int, ...], holes: int, side: int,
                device=None) -> torch.Tensor:
    """Boolean (batch, 1, *sizes) mask, True inside the union of ``holes`` random squares
    (cubes for three ``sizes``) of ``side`` per image (centres uniform, clipped at the border)."""
    d = len(sizes)
    inside = torch.ones((batch, holes) + (1,) * d, dtype=torch.bool, device=device)
    for axis, size in enumerate(sizes):  # the image draws its centre row first, then column
        start = torch.randint(0, size, (batch, holes) + (1,) * d, device=device) - side // 2
        shape = [1, 1] + [1] * d
        shape[2 + axis] = size
        pos = torch.arange(size, device=device).view(shape)
        inside = inside & (pos >= start) & (pos < start + side)
    return inside.any(dim=1, keepdim=True)


@register("cutout")
class Cutout(Regularizer):
    """Cutout (DeVries & Taylor 2017): zero ``holes`` random squares of side
    ``size · min(H, W)`` in every input image (all channels); labels unchanged.

    Args:
        holes: number of squares per image (integer ≥ 1; they may overlap). Default 1.
        size: side of a square as a fraction of the shorter image side, in (0, 1].
            Default 0.25.

    Shapes: (B, C_in, H, W) → same; (B, C_in, D, H, W) → same with cubes of side
    ``size · min(D, H, W)``. Evaluation mode: identity.
    """

    placement = "input"

    def __init__(self, holes: int = 1, size: float = 0.25):
        super().__init__()
        self.holes = check_int("holes", holes, 1)
        self.size = check_real("size", size, 0.0, 1.0, low_open=True)

    def side(self, *sizes: int) -> int:
        """Side in pixels of a square (cube) for an image of ``sizes`` (H, W) or (D, H, W)."""
        return max(1, round(self.size * min(sizes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.dim() not in (4, 5):
            raise ValueError("cutout expects (B, C, H, W) or (B, C, D, H, W) input, "
                             f"got shape {tuple(x.shape)}")
        sizes = tuple(x.shape[2:])
        hole = cutout_mask(x.shape[0], sizes, self.holes, self.side(*sizes), device=x.device)
        return x.masked_fill(hole, 0)

    def extra_repr(self) -> str:
        return f"holes={self.holes}, size={self.size:g}"


@register("input_dropout")
class InputDropout(Dropout):
    """Dropout on the network input (ACIIDS 2021 dental-segmentation paper): zero each
    input value i.i.d. with probability ``p``, scale the rest by ``1/(1 − p)``.

    Args:
        p: drop probability, in [0, 1). Default 0.3; 0 is the identity.

    Shapes: (B, C_in, H, W) → same. Evaluation mode: identity.
    """

    placement = "input"

    def __init__(self, p: float = 0.3):
        super().__init__(p)
