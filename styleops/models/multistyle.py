"""Multi-style network (Dumoulin, Shlens & Kudlur 2017): conditional instance normalization.

Every convolution is shared; each style s owns only a scale and shift per norm layer:
z = gamma_s * (x - mu) / sigma + beta_s. A blend of styles mixes gamma and beta with non-negative
weights normalized to sum to 1, so a blend with weight 1 on one style is exactly that style.
Training: `styleops.training.engine.train_multistyle` and `add_style`. Flows and CLI are still to come (issue 3).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.palette import Palette
from styleops.models.transformer import TransformerNet


class StyleCondition:
    """The style weights [N, S] of the batch being run, shared by all norm layers of one network.

    Set by `MultiStyleTransformerNet.forward`, per thread: the shards of a run share one cached
    network across threads, each forward sees its own weights. Copies and pickles start unset.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def weights(self) -> Tensor | None:
        return getattr(self._local, "weights", None)

    @weights.setter
    def weights(self, value: Tensor | None) -> None:
        self._local.weights = value

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._local = threading.local()


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose affine parameters are chosen (or blended) per sample by style weights.

    One (gamma, beta) Parameter pair per style, so a new style's pair can be trained alone.
    """

    def __init__(self, channels: int, n_styles: int, condition: StyleCondition, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.eps, self.condition = channels, eps, condition
        self.gammas = nn.ParameterList([nn.Parameter(torch.ones(channels)) for _ in range(n_styles)])
        self.betas = nn.ParameterList([nn.Parameter(torch.zeros(channels)) for _ in range(n_styles)])

    @property
    def n_styles(self) -> int:
        return len(self.gammas)

    def add_style(self, init_from: int | None = None) -> None:
        """Append a style whose (gamma, beta) start as a copy of style `init_from`, or as the mean
        of the existing styles' (a neutral start) when None."""
        if init_from is None:
            gamma, beta = (
                torch.stack(list(self.gammas)).mean(0).detach(),
                torch.stack(list(self.betas)).mean(0).detach(),
            )
        else:
            gamma, beta = self.gammas[init_from].detach().clone(), self.betas[init_from].detach().clone()
        self.gammas.append(nn.Parameter(gamma.to(self.gammas[0].device)))
        self.betas.append(nn.Parameter(beta.to(self.betas[0].device)))

    def forward(self, x: Tensor) -> Tensor:
        """x [N, C, H, W] -> same shape; condition.weights [N, S] must be set."""
        w = self.condition.weights
        if w is None:
            raise InvalidInputError("no style weights set: call the network with a style")
        gamma = w.to(x.dtype) @ torch.stack(list(self.gammas)).to(x.dtype)  # [N, C]
        beta = w.to(x.dtype) @ torch.stack(list(self.betas)).to(x.dtype)
        y = F.instance_norm(x, eps=self.eps)
        return y * gamma[:, :, None, None] + beta[:, :, None, None]


def style_weights(style: int | Sequence[float] | Tensor, n_styles: int, batch: int) -> Tensor:
    """A style index, or non-negative weights over styles ([S] or [N, S]) -> normalized [N, S].

    Raises InvalidInputError for an unknown index, a wrong length, negative or all-zero weights.
    """
    if isinstance(style, int):
        if not 0 <= style < n_styles:
            raise InvalidInputError(f"style index {style} out of range for {n_styles} styles")
        w = F.one_hot(torch.tensor(style), n_styles).float()
    else:
        w = torch.as_tensor(style, dtype=torch.float32)
    if w.shape[-1] != n_styles or w.dim() not in (1, 2):
        raise InvalidInputError(f"blend weights must have {n_styles} entries per sample, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise InvalidInputError("blend weights must be finite and non-negative")
    total = w.sum(dim=-1, keepdim=True)
    if (total <= 0).any():
        raise InvalidInputError("blend weights must not all be zero")
    w = w / total
    return w.expand(batch, n_styles) if w.dim() == 1 else w


class MultiStyleTransformerNet(TransformerNet):
    """The per-style body with every instance norm made conditional on the style."""

    def __init__(
        self, n_styles: int, channels: int = 32, n_residual: int = 5, output: str = "direct", palette: bool = False
    ) -> None:
        if n_styles < 1:
            raise InvalidInputError("a multi-style network needs at least one style")
        condition = StyleCondition()
        super().__init__(
            channels,
            n_residual,
            norm=lambda c: ConditionalInstanceNorm2d(c, n_styles, condition),
            output=output,
            palette=palette,
            n_palettes=n_styles,
        )
        self.condition = condition

    def target_palette(self, x: Tensor) -> Palette:
        """Each sample's palette: its style weights [N, S] applied to the styles' means and roots."""
        w = self.condition.weights
        assert w is not None  # set by forward
        w = w.to(self.palette_mean.dtype)
        return Palette(w @ self.palette_mean, torch.einsum("ns,sij->nij", w, self.palette_sqrt_cov))

    @property
    def n_styles(self) -> int:
        return next(m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)).n_styles

    def norms(self) -> list[ConditionalInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]

    def forward(self, x: Tensor, style: int | Sequence[float] | Tensor = 0) -> Tensor:  # type: ignore[override]
        """x [N, 3, H, W] in [0, 1]; style: an index or blend weights ([S] or [N, S])."""
        return self.forward_weighted(x, style_weights(style, self.n_styles, x.shape[0]).to(x.device))

    def forward_weighted(self, x: Tensor, weights: Tensor) -> Tensor:
        """x [N, 3, H, W] in [0, 1]; weights [N, S], already checked and normalized (`style_weights`):
        no data-dependent checks here, so `torch.compile` traces it whole."""
        self.condition.weights = weights
        try:
            return super().forward(x)
        finally:
            self.condition.weights = None

    def add_style(self, init_from: int | None = None) -> int:
        """Append a style (gamma/beta, and palette, copied from `init_from`, else the styles' mean);
        returns its index."""
        for norm in self.norms():
            norm.add_style(init_from)
        if self.palette:
            for name in ("palette_mean", "palette_sqrt_cov"):
                old = getattr(self, name)
                new = old.mean(0, keepdim=True) if init_from is None else old[init_from : init_from + 1]
                setattr(self, name, torch.cat([old, new.clone()]))
        return self.n_styles - 1

    def freeze_all_but_style(self, index: int) -> list[nn.Parameter]:
        """requires_grad only on style `index`'s gammas and betas (adding a style trains just those)."""
        self.requires_grad_(False)
        params: list[nn.Parameter] = []
        for norm in self.norms():
            for p in (norm.gammas[index], norm.betas[index]):
                p.requires_grad_(True)
                params.append(p)
        return params

    def config(self) -> dict[str, int | str]:
        return {**super().config(), "n_styles": self.n_styles}


class Conditioned(nn.Module):
    """A multi-style network with its style weights fixed, checked once here: plain `net(x)` for
    the inference engine, one graph for `torch.compile`."""

    def __init__(self, net: MultiStyleTransformerNet, style: int | Sequence[float] | Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("weights", style_weights(style, net.n_styles, 1))  # [1, S]

    def forward(self, x: Tensor) -> Tensor:
        """x [N, 3, H, W] in [0, 1] -> [N, 3, H, W]."""
        return self.net.forward_weighted(x, self.weights.expand(x.shape[0], -1))
