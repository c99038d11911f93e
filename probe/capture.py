"""Per-head capture from klein's attention output projections, reduced on the device.

    from probe.capture import HeadCapture, head_sites
    sites = head_sites(pipe.transformer)                       # named once, shapes below
    with HeadCapture(pipe.transformer, sites, steps=[0, 12, 25], forwards_per_step=2) as cap:
        cap.set_batch(text_mask=mask, n_img_tokens=n_img)       # before each pipeline call
        pipe(prompt=prompts, ...)
    values = cap.collect()      # numpy float32 [batch, units]; cap.units are the unit names

Capture sites (forward pre-hooks on the output projections: their input is the attention output
of every head, concatenated, before heads are mixed):

    double.{i}.img  # transformer_blocks.{i}.attn.to_out.0 input   [batch, img(+ref) tokens, head, head_dim]
    double.{i}.txt  # transformer_blocks.{i}.attn.to_add_out input  [batch, txt tokens, head, head_dim]
    single.{i}      # single_transformer_blocks.{i}.attn.to_out input
                    #   [batch, txt + img(+ref) tokens, head*head_dim + mlp]; the first inner_dim
                    #   channels are the heads, the rest are MLP activations (fused projection)

Units are named `s{step:02d}/{site}/h{head:02d}` (e.g. `s12/double.3.img/h07`); single-block units
cover image tokens by default (`single_tokens="img"`), or text tokens (`single.{i}.txt`), or both.
Token sets leave out text padding (klein pads prompts to 512 tokens and passes no mask to the
transformer) and reference-image tokens (editing appends them after the generated image tokens).

`SliceCapture` is the published card's protocol: 16-channel slices of the whole projection input
(MLP channels included in single blocks, double blocks' text stream not hooked), RMS over the
whole sequence including padding, one scalar per slice.

Hooks only write into preallocated device buffers: no `.cpu()`/`.item()`, so no host sync per
forward. `collect()` copies once after the run. Hooks are removed on exit, also after an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

REDUCERS = ("rms", "mean_abs", "mean", "l2")
SINGLE_TOKENS = ("img", "txt", "both")


@dataclass(frozen=True)
class Site:
    name: str          # "double.3.img", "double.3.txt", "single.7"
    module: str        # dotted path under the transformer
    kind: str          # "double_img" | "double_txt" | "single"
    block: int
    n_heads: int
    head_dim: int
    in_features: int   # width of the projection input (single blocks: heads + MLP)

    @property
    def head_channels(self) -> int:
        return self.n_heads * self.head_dim


def head_sites(transformer, blocks: Iterable[str] | None = None) -> list[Site]:
    """All capture sites of a Flux2Transformer2DModel in forward order (optionally filtered by name prefix)."""
    sites: list[Site] = []
    for i, blk in enumerate(transformer.transformer_blocks):
        a = blk.attn
        sites.append(Site(f"double.{i}.img", f"transformer_blocks.{i}.attn.to_out.0", "double_img", i,
                          a.heads, a.head_dim, a.to_out[0].in_features))
        sites.append(Site(f"double.{i}.txt", f"transformer_blocks.{i}.attn.to_add_out", "double_txt", i,
                          a.heads, a.head_dim, a.to_add_out.in_features))
    for i, blk in enumerate(transformer.single_transformer_blocks):
        a = blk.attn
        sites.append(Site(f"single.{i}", f"single_transformer_blocks.{i}.attn.to_out", "single", i,
                          a.heads, a.head_dim, a.to_out.in_features))
    if blocks:
        prefixes = tuple(blocks)
        sites = [s for s in sites if s.name.startswith(prefixes)]
    return sites


def site_unit_groups(site: Site, single_tokens: str = "img") -> list[str]:
    """Names of the token groups a site yields units for (a unit = group x head)."""
    if site.kind != "single":
        return [site.name]
    if single_tokens == "both":
        return [f"{site.name}.img", f"{site.name}.txt"]
    return [site.name if single_tokens == "img" else f"{site.name}.txt"]


def head_unit_names(sites: Sequence[Site], steps: Sequence[int], single_tokens: str = "img") -> list[str]:
    names = []
    for s in steps:
        for site in sites:
            for g in site_unit_groups(site, single_tokens):
                names += [f"s{s:02d}/{g}/h{h:02d}" for h in range(site.n_heads)]
    return names


def slice_unit_names(sites: Sequence[Site], steps: Sequence[int], width: int = 16) -> list[str]:
    """Card units: `s00/double.0.img/c0000-0015`, one per `width`-channel slice of the projection input."""
    names = []
    for s in steps:
        for site in sites:
            names += [f"s{s:02d}/{site.name}/c{c:04d}-{c + width - 1:04d}" for c in range(0, site.in_features, width)]
    return names


def text_token_mask(pipe, prompts: Sequence[str], max_sequence_length: int = 512):
    """[batch, max_sequence_length] bool mask of real (non-padding) text tokens, as klein tokenises.

    Repeats `Flux2KleinPipeline._get_qwen3_prompt_embeds`' tokenisation (chat template, thinking
    off, padded to max length) so the real length is known; the transformer never sees this mask.
    """

    masks = []
    for p in prompts:
        text = pipe.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                  add_generation_prompt=True, enable_thinking=False)
        enc = pipe.tokenizer(text, return_tensors="pt", padding="max_length", truncation=True,
                             max_length=max_sequence_length)
        masks.append(enc["attention_mask"][0].bool())
    return torch.stack(masks)


class _CaptureBase:
    """Shared hook bookkeeping: which forward is running, which step slot it writes to."""

    def __init__(self, transformer, sites: Sequence[Site], steps: Sequence[int], forwards_per_step: int = 1):
        if forwards_per_step not in (1, 2):
            raise ValueError("forwards_per_step is 1 (no CFG) or 2 (CFG: conditional forward first)")
        self.transformer = transformer
        self.sites = list(sites)
        self.steps = sorted(set(int(s) for s in steps))
        self.forwards_per_step = forwards_per_step
        self._slot_of_step = {s: k for k, s in enumerate(self.steps)}
        self._handles: list = []
        self._calls = 0
        self._slot = -1          # capture slot of the running forward; -1 = not captured
        self._buffers: dict[str, object] = {}
        self._batch = None
        modules = dict(transformer.named_modules())
        missing = [s.module for s in self.sites if s.module not in modules]
        if missing:
            raise KeyError(f"capture sites not found in the transformer: {missing[:3]}")
        self._modules = [modules[s.module] for s in self.sites]

    # The pipeline calls the transformer once per step, or twice under CFG: conditional first
    # (`cache_context("cond")`), then unconditional. Only conditional forwards are captured.
    def _on_transformer(self, module, args, kwargs):
        call = self._calls
        self._calls += 1
        step, branch = divmod(call, self.forwards_per_step)
        self._slot = self._slot_of_step.get(step, -1) if branch == 0 else -1
        if self._slot >= 0:
            hs = kwargs.get("hidden_states", args[0] if args else None)
            if self._batch is None:
                raise RuntimeError("call set_batch() before running the pipeline under a capture")
            if hs is not None and hs.shape[0] != self._batch["size"]:
                raise RuntimeError(f"capture expected batch {self._batch['size']}, forward has {hs.shape[0]}")

    def reset_calls(self) -> None:
        """Start counting forwards afresh (call between pipeline runs)."""
        self._calls = 0
        self._slot = -1

    @property
    def forwards_seen(self) -> int:
        return self._calls

    def __enter__(self):
        try:
            self._handles.append(self.transformer.register_forward_pre_hook(self._on_transformer, with_kwargs=True))
            for site, mod in zip(self.sites, self._modules):
                self._handles.append(mod.register_forward_pre_hook(self._make_hook(site)))
        except Exception:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _buffer(self, key: str, n: int, like):

        buf = self._buffers.get(key)
        if buf is None:
            buf = torch.zeros(len(self.steps), self._batch["size"], n, dtype=torch.float32, device=like.device)
            self._buffers[key] = buf
        return buf


class HeadCapture(_CaptureBase):
    """Per-head scalars at each captured step of the conditional forward.

    reducer: rms  = sqrt(mean over tokens and head_dim of x^2)   (the card family's quantity)
             mean_abs = mean |x|;  mean = mean x (signed);  l2 = mean over tokens of ||x_head||_2
    """

    def __init__(self, transformer, sites: Sequence[Site], steps: Sequence[int] = (0,), forwards_per_step: int = 1,
                 reducer: str = "rms", single_tokens: str = "img"):
        super().__init__(transformer, sites, steps, forwards_per_step)
        if reducer not in REDUCERS:
            raise ValueError(f"reducer must be one of {REDUCERS}, got {reducer!r}")
        if single_tokens not in SINGLE_TOKENS:
            raise ValueError(f"single_tokens must be one of {SINGLE_TOKENS}, got {single_tokens!r}")
        self.reducer = reducer
        self.single_tokens = single_tokens
        self.units = head_unit_names(self.sites, self.steps, single_tokens)

    def set_batch(self, text_mask, n_img_tokens: int) -> None:
        """text_mask: [batch, txt_len] bool (real tokens); n_img_tokens: generated-image tokens per sample."""

        mask = text_mask.to(torch.float32)
        counts = mask.sum(1, keepdim=True).clamp_min(1.0)
        # Token weights are built once per batch so hooks do one einsum, not a boolean gather.
        self._batch = {"size": int(mask.shape[0]), "txt_len": int(mask.shape[1]), "n_img": int(n_img_tokens),
                       "txt_w": mask / counts, "device_w": {}}
        self.reset_calls()

    def _txt_weights(self, device):
        w = self._batch["device_w"].get(device)
        if w is None:
            w = self._batch["txt_w"].to(device)
            self._batch["device_w"][device] = w
        return w

    def _per_token(self, x):
        """x: [batch, tokens, head, head_dim] -> per-token quantity [batch, tokens, head] (float32)."""

        if self.reducer == "rms":
            return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).square_() / x.shape[-1]
        if self.reducer == "l2":
            return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32)
        if self.reducer == "mean_abs":
            return x.abs().mean(-1, dtype=torch.float32)
        return x.mean(-1, dtype=torch.float32)

    def _reduce_img(self, x):
        q = self._per_token(x).mean(1)       # all generated-image tokens are real
        return q.sqrt_() if self.reducer == "rms" else q

    def _reduce_txt(self, x):

        q = torch.einsum("bth,bt->bh", self._per_token(x), self._txt_weights(x.device))
        return q.sqrt_() if self.reducer == "rms" else q

    def _make_hook(self, site: Site):
        n_h, d_h = site.n_heads, site.head_dim
        groups = site_unit_groups(site, self.single_tokens)

        def hook(module, args):
            slot = self._slot
            if slot < 0:
                return None
            x = args[0]
            b = self._batch
            heads = x[..., : n_h * d_h]
            if site.kind == "double_img":
                v = self._reduce_img(heads[:, : b["n_img"]].unflatten(-1, (n_h, d_h)))
                self._buffer(site.name, n_h, x)[slot] = v
                return None
            if site.kind == "double_txt":
                v = self._reduce_txt(heads.unflatten(-1, (n_h, d_h)))
                self._buffer(site.name, n_h, x)[slot] = v
                return None
            t = b["txt_len"]
            for g in groups:
                if g.endswith(".txt"):
                    v = self._reduce_txt(heads[:, :t].unflatten(-1, (n_h, d_h)))
                else:
                    v = self._reduce_img(heads[:, t: t + b["n_img"]].unflatten(-1, (n_h, d_h)))
                self._buffer(g, n_h, x)[slot] = v
            return None

        return hook

    def collect(self):
        """float32 numpy [batch, units], columns in `self.units` order; one host copy."""
        cols = []
        for site in self.sites:
            for g in site_unit_groups(site, self.single_tokens):
                if g not in self._buffers:
                    raise RuntimeError(f"no forward reached site {g} at the captured steps "
                                       f"{self.steps} (forwards seen: {self._calls})")
        for k in range(len(self.steps)):
            for site in self.sites:
                for g in site_unit_groups(site, self.single_tokens):
                    cols.append(self._buffers[g][k])
        out = torch.cat(cols, dim=-1).cpu().numpy().astype(np.float32)
        self._buffers.clear()
        return out


class SliceCapture(_CaptureBase):
    """The card's protocol: RMS over sequence and channels of each `width`-channel slice.

    Every token of the hooked input counts (text padding, text and image tokens alike), as in the
    card's unmasked hook; each batch element is one prompt (the card ran one prompt per forward).
    """

    def __init__(self, transformer, sites: Sequence[Site], steps: Sequence[int] = (0,), forwards_per_step: int = 1,
                 width: int = 16):
        sites = [s for s in sites if s.kind != "double_txt"]  # the card hooked to_out only
        super().__init__(transformer, sites, steps, forwards_per_step)
        bad = [s.name for s in self.sites if s.in_features % width]
        if bad:
            raise ValueError(f"slice width {width} does not divide the projection input of {bad}")
        self.width = width
        self.units = slice_unit_names(self.sites, self.steps, width)

    def set_batch(self, batch_size: int) -> None:
        self._batch = {"size": int(batch_size)}
        self.reset_calls()

    def _make_hook(self, site: Site):
        w = self.width

        def hook(module, args):
            slot = self._slot
            if slot < 0:
                return None

            x = args[0].unflatten(-1, (-1, w))                      # [batch, tokens, slices, width]
            ms = torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).square_().mean(1) / w
            self._buffer(site.name, site.in_features // w, args[0])[slot] = ms.sqrt_()
            return None

        return hook

    def collect(self):
        cols = [self._buffers[s.name][k] for k in range(len(self.steps)) for s in self.sites]
        out = torch.cat(cols, dim=-1).cpu().numpy().astype(np.float32)
        self._buffers.clear()
        return out
