"""The one loss registry: every training loss term, declared once under the name configs use.

Both trainers build their loss here: the curriculum (a stage's ``weights``, :mod:`.trainer`) and the fine-tune
that made the shipped weights (its ``l1``/``fft``/``lpips`` fields, :data:`.finetune.CONFIG_WEIGHTS`), and the
model card prints the formula from it (:func:`loss_formula`).  A term is a function of one head's
:class:`HeadOutputs` and the :class:`TermOptions`, registered with :func:`loss_term` under its name, with what
it compares (``needs``) and the label a model card shows.  Its weight comes from the config; a term weighted 0
is not computed.  The math of each term is in :mod:`.losses`.

Adding a term: one decorated function below; its name is then a valid key of a stage's ``weights``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch

from . import losses as L

LATENT, TEACHER, PIXELS = "latent", "teacher", "pixels"  # what a term compares (see HeadOutputs)


@dataclass(frozen=True)
class TermOptions:
    """The settings of the terms (``LossConfig`` of a curriculum config; the defaults are the fine-tune's)."""

    fft_norm: str = "ortho"
    hf_sigma: float = 1.0
    hf_kernel: int = 5
    down_factor: int = 1  # pix_down_l1's factor for this head
    eagle_patch: int = 3
    eagle_cutoff: float = 0.5


@dataclass
class HeadOutputs:
    """One head's prediction and what it is compared with; ``None`` where a trainer does not make it.

    Latents are compared in whatever space the trainer passes (the curriculum uses the normalised one).
    ``lpips_fn`` is ``lua_core.metrics.perceptual.LPIPS`` (frozen AlexNet, differentiable in its first input).
    """

    pred_lat: Optional[torch.Tensor] = None
    target_lat: Optional[torch.Tensor] = None
    teacher_lat: Optional[torch.Tensor] = None
    pred_img: Optional[torch.Tensor] = None
    target_img: Optional[torch.Tensor] = None
    lpips_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None


TermFn = Callable[[HeadOutputs, TermOptions], torch.Tensor]


@dataclass(frozen=True)
class LossTerm:
    """A registered term: its config name, what it compares, its model-card label and its function."""

    name: str
    needs: str
    label: str
    fn: TermFn


REGISTRY: dict[str, LossTerm] = {}  # in registration order, which is also the order of the weighted sum

# what each kind of term needs from HeadOutputs, and the error when a trainer did not make it
_NEEDS = {LATENT: (("pred_lat", "target_lat"), "latent loss terms need predicted and target latents"),
          TEACHER: (("pred_lat", "teacher_lat"), "teacher loss terms need teacher latents"),
          PIXELS: (("pred_img", "target_img"), "pixel loss terms need decoded and target images")}


def loss_term(name: str, needs: str, label: str) -> Callable[[TermFn], TermFn]:
    """Register the decorated function as the term ``name``."""
    if needs not in _NEEDS:
        raise ValueError(f"loss term {name!r}: needs must be one of {sorted(_NEEDS)}")

    def register(fn: TermFn) -> TermFn:
        if name in REGISTRY:
            raise ValueError(f"loss term {name!r} is registered twice")
        REGISTRY[name] = LossTerm(name, needs, label, fn)
        return fn

    return register


@loss_term("latent_l1", LATENT, "latent L1")
def _latent_l1(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.l1(x.pred_lat, x.target_lat)


@loss_term("latent_fft", LATENT, "latent FFT-L1")
def _latent_fft(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.fft_l1(x.pred_lat, x.target_lat, o.fft_norm)


@loss_term("teacher_l1", TEACHER, "L1 to the teacher latent")
def _teacher_l1(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.l1(x.pred_lat, x.teacher_lat)


@loss_term("teacher_fft", TEACHER, "FFT-L1 to the teacher latent")
def _teacher_fft(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.fft_l1(x.pred_lat, x.teacher_lat, o.fft_norm)


@loss_term("pix_down_l1", PIXELS, "downsampled L1")
def _pix_down_l1(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.down_l1(x.pred_img, x.target_img, o.down_factor)


@loss_term("pix_hf_l1", PIXELS, "high-pass L1")
def _pix_hf_l1(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.high_freq_l1(x.pred_img, x.target_img, o.hf_sigma, o.hf_kernel)


@loss_term("pix_l1", PIXELS, "L1")
def _pix_l1(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.l1(x.pred_img, x.target_img)


@loss_term("pix_fft", PIXELS, "FFT-L1")
def _pix_fft(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.fft_l1(x.pred_img, x.target_img, o.fft_norm)


@loss_term("eagle", PIXELS, "EAGLE")
def _eagle(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    return L.eagle_loss(x.pred_img, x.target_img, o.eagle_patch, o.eagle_cutoff)


@loss_term("lpips", PIXELS, "LPIPS(AlexNet)")
def _lpips(x: HeadOutputs, o: TermOptions) -> torch.Tensor:
    if x.lpips_fn is None:
        raise ValueError("the lpips loss term needs the LPIPS network (run `python -m lua_core.metrics.fetch`)")
    return x.lpips_fn(x.pred_img, x.target_img).mean()


def terms_needing(needs: str) -> tuple[str, ...]:
    """The names of the terms that compare ``needs`` (``LATENT``, ``TEACHER`` or ``PIXELS``)."""
    return tuple(t.name for t in REGISTRY.values() if t.needs == needs)


def unknown_terms(weights: Mapping[str, float]) -> list[str]:
    """The keys of ``weights`` that name no registered term (sorted)."""
    return sorted(set(weights) - set(REGISTRY))


def active(weights: Mapping[str, float]) -> dict[str, float]:
    """The terms with a non-zero weight, in registry order, weights as floats."""
    unknown = unknown_terms(weights)
    if unknown:
        raise ValueError(f"unknown loss terms {unknown}; known: {list(REGISTRY)}")
    return {name: float(weights[name]) for name in REGISTRY if weights.get(name)}


def term_values(weights: Mapping[str, float], x: HeadOutputs,
                opts: TermOptions = TermOptions()) -> dict[str, torch.Tensor]:
    """The unweighted value of each term with a non-zero weight (a scalar each, float32)."""
    names = active(weights)
    if not names:
        raise ValueError("a loss needs at least one loss term with a non-zero weight")
    for needs in dict.fromkeys(REGISTRY[n].needs for n in names):
        fields, message = _NEEDS[needs]
        if any(getattr(x, f) is None for f in fields):
            raise ValueError(message)
    return {n: REGISTRY[n].fn(x, opts) for n in names}


def weighted_sum(weights: Mapping[str, float], values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``sum(weight x value)`` over ``values`` (in their order)."""
    return sum(float(weights[k]) * v for k, v in values.items())  # type: ignore[return-value]


def weighted_loss(weights: Mapping[str, float], x: HeadOutputs,
                  opts: TermOptions = TermOptions()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One head's loss: ``(sum of weight x term, {term: unweighted value})``."""
    values = term_values(weights, x, opts)
    return weighted_sum(weights, values), values


def loss_formula(head_weights: Mapping[int, Mapping[str, float]]) -> str:
    """The weighted sum as a model card writes it, e.g. ``10.0 x L1 + 1.0 x FFT-L1 + 0.3 x LPIPS(AlexNet)``.

    ``head_weights`` maps each head (scale) to its weights; the largest head's are written, and a term weighted
    otherwise on another head says so, e.g. ``0.6 x LPIPS(AlexNet) (x2 head 1.5)``.
    """
    heads = sorted(head_weights)
    weight = {s: active(head_weights[s]) for s in heads}
    parts = []
    for name in REGISTRY:
        if not any(name in w for w in weight.values()):
            continue
        base = weight[heads[-1]].get(name, 0.0)
        others = [f"x{s} head {weight[s].get(name, 0.0)}" for s in heads[:-1] if weight[s].get(name, 0.0) != base]
        parts.append(f"{base} x {REGISTRY[name].label}" + (f" ({', '.join(others)})" if others else ""))
    return " + ".join(parts)
