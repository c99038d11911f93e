"""Per-head capture from klein's attention output projections, reduced on the device.

    from probe.klein.capture import HeadCapture, head_sites, text_token_mask
    sites = head_sites(pipe.transformer)                       # named once, shapes below
    with HeadCapture(pipe.transformer, sites, steps=[0, 12, 25], forwards_per_step=2) as cap:
        cap.set_batch(text_mask=mask, n_img_tokens=n_img)       # before each pipeline call (text calls)
        pipe(prompt=prompts, ...)
        values = cap.collect()  # numpy float32 [batch, units]; cap.units are the unit names

    # editing calls (reference image): units for the reference tokens too; probe.klein.edit_capture runs them
    with HeadCapture(pipe.transformer, sites, steps=[0], ref_tokens=True) as cap:
        cap.set_batch(text_mask=mask, n_img_tokens=n_img, n_ref_tokens=n_ref)
        pipe(image=reference, prompt=text, ...)

Capture sites (forward pre-hooks on the output projections: their input is the attention output
of every head, concatenated, before heads are mixed):

    double.{i}.img  # transformer_blocks.{i}.attn.to_out.0 input   [batch, img + ref tokens, head, head_dim]
    double.{i}.txt  # transformer_blocks.{i}.attn.to_add_out input  [batch, txt tokens, head, head_dim]
    single.{i}      # single_transformer_blocks.{i}.attn.to_out input
                    #   [batch, txt + img + ref tokens, head*head_dim + mlp]; the first inner_dim
                    #   channels are the heads, the rest are MLP activations (fused projection)

Token regions (`img` generated, `txt` real text, `ref` reference image) and where they sit in each
hooked input are defined once in `probe.klein.regions` (`TokenLayout.span`); units are named
`s{step:02d}/{group}/h{head:02d}` with `group = probe.klein.regions.group_name(site, region)`:

    double.{i}.img, double.{i}.txt             always (one group per double-block site)
    single.{i}                                 single_tokens="img" (default): image tokens
    single.{i}.txt                             single_tokens="txt"
    single.{i}.img + single.{i}.txt            single_tokens="both" (image group spelled with .img)
    double.{i}.ref, single.{i}.ref             ref_tokens=True: reference-image tokens (editing calls)

Order of columns: step, then site in forward order, then group in the order above, then head. The
defaults give the text probe's 720 units per step at klein scale (5 x 2 x 24 + 20 x 24); with
`ref_tokens=True`, 1320. Text padding never counts (klein pads prompts to 512 tokens and passes no
mask to the transformer): text units are weighted by the real-token mask given to `set_batch`.

Every captured forward is checked against the layout given to `set_batch` (a `TokenLayout`): the
transformer's image-stream and text token counts, each hooked input's token count (a clear
RuntimeError at once otherwise), and the pipeline's own positional ids (`img_ids`: generated tokens
have time coordinate 0, reference tokens a non-zero one), compared on the device and reported by
`collect()`, so a reference prepended instead of appended cannot pass unnoticed.

`SliceCapture` is the published card's protocol: 16-channel slices of the whole projection input
(MLP channels included in single blocks, double blocks' text stream not hooked), RMS over every
token of the hooked input (padding, text, generated and reference tokens alike), one scalar per slice.

Hooks only write into one preallocated device buffer per batch: no `.cpu()`/`.item()`, so no host
sync per forward. `collect()` copies once after the run. Hooks are removed on exit, also after an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .regions import TokenLayout, group_name

REDUCERS = ("rms", "mean_abs", "mean", "l2")
SINGLE_TOKENS = ("img", "txt", "both")


# Change vectors (HeadCapture(change_dim=D), the image probe's `--change-dim`). The scalar units above keep how
# active a head is (RMS over its tokens); a lighting change can move *where* a head is active without moving
# that RMS. So editing runs also keep, per image, every img/ref head unit's whole output over its region's tokens
# [tokens x head_dim], and the transformer's input over the reference tokens (the packed reference latents,
# pseudo-unit `s{step}/input.ref`) and its output over the generated tokens (the predicted velocity, pseudo-unit
# `s{step}/output.img`: the whole network's own change), each as D numbers: exactly (zero-padded) when
# tokens x head_dim <= D, else a fixed count sketch (bucket and sign per position seeded by the length only: both images of a pair share it), whose
# squared distances are unbiased with relative sd about sqrt(2 / D). Distances between the two images of a pair
# are what `probe.stats.change` tests. Column order per step: input.ref, output.img, then per site (txt sites
# excluded) its img heads, then its ref heads.
CHANGE_SKETCH_SEED = 0x5EED
CHANGE_INPUT_GROUP = "input.ref"
CHANGE_OUTPUT_GROUP = "output.img"


def change_unit_names(sites: Sequence[Site], steps: Sequence[int], single_tokens: str = "img") -> list[str]:
    """Names of the change-vector units, in HeadCapture's column order (see CHANGE_VECTORS above)."""
    names = []
    for s in steps:
        names += [f"s{s:02d}/{CHANGE_INPUT_GROUP}", f"s{s:02d}/{CHANGE_OUTPUT_GROUP}"]
        for site in sites:
            if site.kind == "double_txt":
                continue
            for region in ("img", "ref"):
                g = group_name(site.name, region)
                if site.kind == "single" and region == "img" and single_tokens == "both":
                    g = f"{g}.img"
                names += [f"s{s:02d}/{g}/h{h:02d}" for h in range(site.n_heads)]
    return names


class StopSampling(Exception):
    """Raised by `stop_callback()` once the last captured step is done: later steps cannot change it."""


@dataclass(frozen=True)
class Site:
    name: str          # "double.3.img", "double.3.txt", "single.7"
    module: str        # dotted path under the transformer
    kind: str          # "double_img" | "double_txt" | "single"  (probe.klein.regions.SITE_KINDS)
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


def site_regions(site: Site, single_tokens: str = "img", ref_tokens: bool = False) -> list[str]:
    """Token regions (probe.klein.regions.REGIONS) a site yields units for, in column order."""
    if single_tokens not in SINGLE_TOKENS:
        raise ValueError(f"single_tokens must be one of {SINGLE_TOKENS}, got {single_tokens!r}")
    if site.kind == "double_txt":
        return ["txt"]
    regions = ["img"] if site.kind == "double_img" else {"img": ["img"], "txt": ["txt"], "both": ["img", "txt"]}[single_tokens]
    return regions + ["ref"] if ref_tokens else regions


def site_unit_groups(site: Site, single_tokens: str = "img", ref_tokens: bool = False) -> list[str]:
    """Names of the token groups a site yields units for (a unit = group x head), in column order."""
    groups = []
    for region in site_regions(site, single_tokens, ref_tokens):
        g = group_name(site.name, region)
        if site.kind == "single" and region == "img" and single_tokens == "both":
            g = f"{g}.img"  # beside its text group the image group is spelled single.{i}.img (same group)
        groups.append(g)
    return groups


def head_unit_names(sites: Sequence[Site], steps: Sequence[int], single_tokens: str = "img",
                    ref_tokens: bool = False) -> list[str]:
    names = []
    for s in steps:
        for site in sites:
            for g in site_unit_groups(site, single_tokens, ref_tokens):
                names += [f"s{s:02d}/{g}/h{h:02d}" for h in range(site.n_heads)]
    return names


def slice_unit_names(sites: Sequence[Site], steps: Sequence[int], width: int = 16) -> list[str]:
    """Card units: `s00/double.0.img/c0000-0015`, one per `width`-channel slice of the projection input."""
    names = []
    for s in steps:
        for site in sites:
            names += [f"s{s:02d}/{site.name}/c{c:04d}-{c + width - 1:04d}" for c in range(0, site.in_features, width)]
    return names


def chat_text(tokenizer, prompt: str) -> str:
    """The text klein's text encoder reads for `prompt`: Qwen3's chat template around it (one user turn, a
    generation prompt, thinking off), as `Flux2KleinPipeline._get_qwen3_prompt_embeds` builds it."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)


def text_token_mask(pipe, prompts: Sequence[str], max_sequence_length: int = 512):
    """[batch, max_sequence_length] bool mask of real (non-padding) text tokens, as klein tokenises:
    the prompt's own tokens and the chat template's fixed tokens around it (`TEXT_TOKENS` "all").

    Repeats `Flux2KleinPipeline._get_qwen3_prompt_embeds`' tokenisation (chat template, thinking
    off, padded to max length) so the real length is known; the transformer never sees this mask.
    """

    masks = []
    for p in prompts:
        enc = pipe.tokenizer(chat_text(pipe.tokenizer, p), return_tensors="pt", padding="max_length", truncation=True,
                             max_length=max_sequence_length)
        masks.append(enc["attention_mask"][0].bool())
    return torch.stack(masks)


# Which text tokens a `.txt` unit reduces over (CaptureConfig.text_tokens, `probe run --text-tokens`):
#   prompt  the prompt's own tokens: klein's chat template (`<|im_start|>user\n` before, `<|im_end|>\n<|im_start|>
#           assistant\n<think>\n\n</think>\n\n` after; about a dozen tokens, the same for every prompt) and the
#           padding are left out (the default since issue 17)
#   all     every non-padding token: the prompt and the template's fixed tokens (runs made before issue 17)
TEXT_TOKENS = ("prompt", "all")


def prompt_token_spans(tokenizer, prompts: Sequence[str], max_sequence_length: int = 512) -> list[tuple[int, int]]:
    """Per prompt, the token positions [start, stop) of the prompt's own text in klein's padded token sequence
    (chat template tokens before and after it, and padding, outside). A token that straddles the prompt's first
    or last character counts as the prompt's. Truncation at max_sequence_length is respected.

    Needs a fast tokenizer (character offsets); klein's Qwen2TokenizerFast is one."""
    spans = []
    for p in prompts:
        text = chat_text(tokenizer, p)
        c0 = text.find(p) if p else -1
        if p and c0 < 0:
            raise ValueError(f"the chat template does not contain the prompt verbatim ({p[:40]!r}...): the prompt's "
                             "tokens cannot be told from the template's")
        enc = tokenizer(text, padding="max_length", truncation=True, max_length=max_sequence_length,
                        return_offsets_mapping=True)
        if "offset_mapping" not in enc:
            raise ValueError("the tokenizer gives no character offsets (a slow tokenizer): load the fast one "
                             "(Qwen2TokenizerFast), or capture with --text-tokens all")
        c1 = c0 + len(p)
        inside = [i for i, ((a, b), m) in enumerate(zip(enc["offset_mapping"], enc["attention_mask"]))
                  if m and p and b > a and a < c1 and b > c0]
        if not inside:
            spans.append((0, 0))
            continue
        if inside != list(range(inside[0], inside[-1] + 1)):
            raise ValueError(f"the prompt's tokens are not contiguous in the tokenised chat text ({p[:40]!r}...)")
        spans.append((inside[0], inside[-1] + 1))
    return spans


def text_mask(pipe, prompts: Sequence[str], max_sequence_length: int = 512, text_tokens: str = "prompt"):
    """[batch, max_sequence_length] bool mask of the text tokens a `.txt` unit reduces over (`TEXT_TOKENS`):
    the prompt's own tokens ("prompt") or every non-padding token ("all", `text_token_mask`)."""
    if text_tokens not in TEXT_TOKENS:
        raise ValueError(f"text_tokens must be one of {TEXT_TOKENS}, got {text_tokens!r}")
    real = text_token_mask(pipe, prompts, max_sequence_length)
    if text_tokens == "all":
        return real
    mask = torch.zeros_like(real)
    for i, (a, b) in enumerate(prompt_token_spans(pipe.tokenizer, prompts, max_sequence_length)):
        mask[i, a:b] = True
    return mask & real


def text_token_counts(pipe, prompts: Sequence[str], max_sequence_length: int = 512) -> list[dict]:
    """Per prompt: {"prompt": its own tokens, "template": the chat template's tokens, "all": both} (no padding)."""
    real = text_token_mask(pipe, prompts, max_sequence_length).sum(1).tolist()
    own = [b - a for a, b in prompt_token_spans(pipe.tokenizer, prompts, max_sequence_length)]
    return [{"prompt": int(o), "template": int(r) - int(o), "all": int(r)} for o, r in zip(own, real)]


def check_right_padding(tokenizer, where: str) -> None:
    """Raise unless the tokenizer pads on the right: code that rebuilds a text mask from lengths (positions
    0 .. length - 1 are real) is only right for right padding. Qwen's tokenizer pads right by default."""
    side = getattr(tokenizer, "padding_side", "right")
    if side != "right":
        raise ValueError(f"{where}: the tokenizer pads on the {side}, but the text-token positions are rebuilt from "
                         "lengths as if padding were on the right (klein's Qwen2 tokenizer pads right); set "
                         "tokenizer.padding_side = 'right'")


def run_until_stop(pipe, **kwargs) -> bool:
    """Call the pipeline with a capture's `stop_callback()` among `kwargs`; True when sampling was stopped early.

    A call ended by `StopSampling` never reaches the pipeline's own last line, `maybe_free_model_hooks()`, which
    with `enable_model_cpu_offload` (`--offload`) moves every model back to the CPU and re-arms the offload
    hooks. Skipped, the transformer stays on the GPU from the second call on, beside the text encoder the next
    call loads (klein: about 7.2 + 7.5 GiB). So the early end frees the hooks here, as the pipeline would have.
    """
    try:
        with torch.inference_mode():
            pipe(**kwargs)
    except StopSampling:
        free = getattr(pipe, "maybe_free_model_hooks", None)
        if free is not None:
            free()
        return True
    return False


class _CaptureBase:
    """Shared hook bookkeeping: which forward is running, which step slot it writes to, the layout
    checks, and the one device buffer [steps, batch, columns per step] that every site writes into."""

    def __init__(self, transformer, sites: Sequence[Site], steps: Sequence[int], forwards_per_step: int = 1):
        if forwards_per_step not in (1, 2):
            raise ValueError("forwards_per_step is 1 (no CFG) or 2 (CFG: conditional forward first)")
        self.transformer = transformer
        self.sites = list(sites)
        self.steps = sorted(set(int(s) for s in steps))
        if not self.steps or self.steps[0] < 0:
            raise ValueError(f"capture steps must be non-negative step indices, got {list(steps)}")
        self.forwards_per_step = forwards_per_step
        self._slot_of_step = {s: k for k, s in enumerate(self.steps)}
        self._handles: list = []
        self._calls = 0
        self._slot = -1          # capture slot of the running forward; -1 = not captured
        self._batch_size: int | None = None
        self.layout: TokenLayout | None = None   # token counts of the running batch (set_batch)
        self._buf = None         # [steps, batch, columns per step] float32 on the forward's device
        self._bad_ids = None     # 0-dim bool on the device: positional ids disagree with the layout
        self._reached: set = set()               # (slot, site name) written since set_batch
        self._offset: dict[str, int] = {}        # site name -> first column within a step
        self._per_step = 0
        modules = dict(transformer.named_modules())
        missing = [s.module for s in self.sites if s.module not in modules]
        if missing:
            raise KeyError(f"capture sites not found in the transformer: {missing[:3]}")
        self._modules = [modules[s.module] for s in self.sites]

    def _set_columns(self, widths: Sequence[int]) -> None:
        off = 0
        for site, w in zip(self.sites, widths):
            self._offset[site.name] = off
            off += w
        self._per_step = off

    def _start_batch(self, batch_size: int, layout: TokenLayout | None) -> None:
        self._batch_size = int(batch_size)
        self.layout = layout
        self._reached = set()
        self._buf = None        # fresh per batch (made at its first captured forward, on that device)
        self._bad_ids = None
        self.reset_calls()

    def _prepare_device(self, device) -> None:
        """Per-batch device state, made once at the first captured forward (subclasses add theirs)."""
        if self._buf is None:
            self._buf = torch.empty(len(self.steps), self._batch_size, self._per_step, dtype=torch.float32,
                                    device=device)
        if self._bad_ids is None:
            self._bad_ids = torch.zeros((), dtype=torch.bool, device=device)

    # The pipeline calls the transformer once per step, or twice under CFG: conditional first
    # (`cache_context("cond")`), then unconditional. Only conditional forwards are captured.
    def _on_transformer(self, module, args, kwargs):
        call = self._calls
        self._calls += 1
        step, branch = divmod(call, self.forwards_per_step)
        self._slot = self._slot_of_step.get(step, -1) if branch == 0 else -1
        if self._slot < 0:
            return
        if self._batch_size is None:
            raise RuntimeError("call set_batch() before running the pipeline under a capture")
        hs = kwargs.get("hidden_states", args[0] if args else None)
        if hs.shape[0] != self._batch_size:
            raise RuntimeError(f"capture expected batch {self._batch_size}, forward has {hs.shape[0]}")
        self._prepare_device(hs.device)
        if self.layout is not None:
            self._check_forward(hs, kwargs)

    def _check_forward(self, hs, kwargs) -> None:
        """Token counts (host-side shapes) now; positional ids on the device, read by collect()."""
        lay = self.layout
        if hs.shape[1] != lay.n_img + lay.n_ref:
            raise RuntimeError(
                f"the transformer's image stream has {hs.shape[1]} tokens, but the capture's layout {lay} predicts "
                f"n_img + n_ref = {lay.n_img + lay.n_ref}: the pipeline's sequence layout is not what the capture "
                f"assumes (for an editing call, give set_batch the reference tokens; probe.klein.edit_capture.edit_layout "
                f"computes them from the reference image)")
        ehs = kwargs.get("encoder_hidden_states")
        if ehs is not None and ehs.shape[1] != lay.txt_len:
            raise RuntimeError(f"the transformer's text stream has {ehs.shape[1]} tokens, but the capture's layout "
                               f"{lay} predicts txt_len = {lay.txt_len} (the text mask given to set_batch must be "
                               f"as long as the pipeline's max_sequence_length)")
        ids = kwargs.get("img_ids")
        if ids is not None:
            t = (ids[0] if ids.ndim == 3 else ids)[:, 0]   # time coordinate: 0 generated, 10, 20, ... references
            bad = (t[: lay.n_img] != 0).any()
            if lay.n_ref:
                bad = bad | (t[lay.n_img:] == 0).any()
            self._bad_ids |= bad.to(self._bad_ids.device)

    def _check_site(self, site: Site, x) -> None:
        lay = self.layout
        if lay is not None and x.shape[1] != lay.seq_len(site.kind):
            lay.check(site.kind, x.shape[1], where=f"{site.name} ({site.module})")

    def reset_calls(self) -> None:
        """Start counting forwards afresh (call between pipeline runs)."""
        self._calls = 0
        self._slot = -1

    @property
    def forwards_seen(self) -> int:
        return self._calls

    def stop_callback(self):
        """A `callback_on_step_end` for the pipeline that ends sampling (raises `StopSampling`) once the
        last captured step is done; later steps cannot change what was captured."""
        last = max(self.steps)

        def stop_after_last(pipe, i, t, kwargs):
            if i >= last:
                raise StopSampling
            return kwargs

        return stop_after_last

    def check_forwards(self) -> None:
        """Raise unless the pipeline ran exactly the forwards up to the last captured step."""
        expected = (max(self.steps) + 1) * self.forwards_per_step
        if self._calls != expected:
            raise RuntimeError(f"the pipeline ran {self._calls} transformer forwards, expected {expected}: the CFG "
                               "layout assumed by the capture does not hold for this pipeline version, or it ran "
                               f"fewer steps than the last captured step {max(self.steps)} needs")

    def _finish(self, flat):
        """The last elementwise step over the whole buffer [batch, steps * columns], once per batch on the device
        (a subclass's square root, say, instead of one per hook and forward)."""
        return flat

    def collect(self):
        """float32 numpy [batch, units], columns in `self.units` order; one host copy."""
        missing = [f"{s.name}@step{self.steps[k]}" for k in range(len(self.steps)) for s in self.sites
                   if (k, s.name) not in self._reached]
        if missing or self._buf is None:
            raise RuntimeError(f"no forward reached site(s) {missing[:3]} at the captured steps {self.steps} "
                               f"(forwards seen: {self._calls})")
        b = self._batch_size
        flat = self._finish(self._buf.transpose(0, 1).reshape(b, -1))       # [batch, steps * columns]
        host = torch.cat([flat, self._bad_ids.to(torch.float32).expand(b, 1)], dim=1).cpu().numpy()
        self._reached = set()
        if host[0, -1]:
            raise RuntimeError(f"the pipeline's positional ids (img_ids) disagree with the capture's layout "
                               f"{self.layout}: expected {self.layout.n_img} generated tokens (time coordinate 0) "
                               f"followed by {self.layout.n_ref} reference tokens (non-zero time coordinate); "
                               "the pipeline does not append references after the generated tokens as assumed")
        return np.ascontiguousarray(host[:, :-1], dtype=np.float32)

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

    @property
    def active(self) -> bool:
        """True inside `with`: the hooks are registered."""
        return bool(self._handles)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class HeadCapture(_CaptureBase):
    """Per-head scalars at each captured step of the conditional forward.

    reducer: rms  = sqrt(mean over tokens and head_dim of x^2)   (the card family's quantity)
             mean_abs = mean |x|;  mean = mean x (signed);  l2 = mean over tokens of ||x_head||_2
    Tokens are those of the unit's region; text tokens are weighted by the real-token mask.
    single_tokens: which regions single blocks give units for ("img", "txt", "both");
    ref_tokens: also units for the reference-image tokens (double.{i}.ref, single.{i}.ref).
    """

    def __init__(self, transformer, sites: Sequence[Site], steps: Sequence[int] = (0,), forwards_per_step: int = 1,
                 reducer: str = "rms", single_tokens: str = "img", ref_tokens: bool = False, change_dim: int = 0):
        super().__init__(transformer, sites, steps, forwards_per_step)
        if change_dim < 0:
            raise ValueError(f"change_dim must be >= 0, got {change_dim}")
        if change_dim and not ref_tokens:
            raise ValueError("change vectors (change_dim > 0) need editing calls (ref_tokens=True): their input "
                             "yardstick is the reference image's tokens")
        self.change_dim = int(change_dim)
        if reducer not in REDUCERS:
            raise ValueError(f"reducer must be one of {REDUCERS}, got {reducer!r}")
        if single_tokens not in SINGLE_TOKENS:
            raise ValueError(f"single_tokens must be one of {SINGLE_TOKENS}, got {single_tokens!r}")
        self.reducer = reducer
        # rms: the hooks write the mean square (the weights below carry the 1 / head_dim) and collect() takes the
        # square root once per batch: two kernels fewer per hook, whose host-side launches are most of the per-head
        # capture's cost on a GPU (benchmarks/RESULTS.md, "klein 4B shape on a GPU").
        dims = {s.kind: {t.head_dim for t in self.sites if t.kind == s.kind} for s in self.sites}
        uneven = {k: sorted(v) for k, v in dims.items() if len(v) > 1}
        if uneven:
            raise ValueError(f"capture sites of one kind have different head_dim {uneven}: the per-kind weights "
                             "assume one head_dim per kind (Flux2 has one head_dim throughout)")
        self._weight_scale = {k: (1.0 / v.pop() if reducer == "rms" else 1.0) for k, v in dims.items()}
        self.single_tokens = single_tokens
        self.ref_tokens = bool(ref_tokens)
        self._regions = {s.kind: site_regions(s, single_tokens, self.ref_tokens) for s in self.sites}
        self.units = head_unit_names(self.sites, self.steps, single_tokens, self.ref_tokens)
        self._set_columns([len(self._regions[s.kind]) * s.n_heads for s in self.sites])
        self._weights_cpu: dict = {}
        self._weights: dict = {}
        # change vectors (the "Change vectors" comment above): per step input.ref, output.img, then img/ref heads
        self.change_units = change_unit_names(self.sites, self.steps, single_tokens) if self.change_dim else []
        self._coff: dict[str, int] = {}
        off = 2                         # 0: input.ref, 1: output.img
        for s in self.sites:
            if s.kind != "double_txt":
                self._coff[s.name] = off
                off += 2 * s.n_heads
        self._c_per_step = off
        self._cbuf = None
        self._sketches: dict = {}

    def set_batch(self, text_mask, n_img_tokens: int, n_ref_tokens: int = 0) -> None:
        """Before each pipeline call. text_mask: [batch, txt_len] bool, real text tokens (txt_len = the
        pipeline's max_sequence_length); n_img_tokens: generated-image tokens; n_ref_tokens: reference-image
        tokens (0 for text calls). Sets `self.layout = TokenLayout(txt_len, n_img_tokens, n_ref_tokens)`."""
        mask = torch.as_tensor(text_mask).detach().to("cpu", torch.float32)
        layout = TokenLayout(int(mask.shape[1]), int(n_img_tokens), int(n_ref_tokens))
        if self.ref_tokens and layout.n_ref == 0:
            raise ValueError("this capture gives reference-token units (ref_tokens=True) but the batch has no "
                             "reference image (n_ref_tokens=0)")
        txt_w = mask / mask.sum(1, keepdim=True).clamp_min(1.0)
        # Per site kind: the token range the hook reads and one weight row per region, so a hook
        # reduces all its regions with one batched matmul: [b, regions, tokens] @ [b, tokens, heads].
        self._weights_cpu = {}
        for kind, regions in self._regions.items():
            spans = [layout.span(kind, r) for r in regions]
            lo, hi = min(s.start for s in spans), max(s.stop for s in spans)
            w = torch.zeros(mask.shape[0], len(regions), hi - lo)
            for g, (region, sp) in enumerate(zip(regions, spans)):
                w[:, g, sp.start - lo: sp.stop - lo] = txt_w if region == "txt" else 1.0 / (sp.stop - sp.start)
            self._weights_cpu[kind] = (lo, hi, w * self._weight_scale[kind])
        self._start_batch(mask.shape[0], layout)
        # Moved to the transformer's device now, between pipeline calls, so no forward waits for a copy;
        # a transformer that moves later (CPU offload) gets them at its first captured forward.
        self._weights = {}
        self._prepare_weights(self._transformer_device())

    def _transformer_device(self):
        p = next(self.transformer.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _prepare_weights(self, device) -> None:
        if not self._weights or next(iter(self._weights.values()))[2].device != device:
            self._weights = {k: (lo, hi, w.to(device)) for k, (lo, hi, w) in self._weights_cpu.items()}

    def _prepare_device(self, device) -> None:
        super()._prepare_device(device)
        self._prepare_weights(device)
        if self.change_dim and self._cbuf is None:
            self._cbuf = torch.zeros(len(self.steps), self._batch_size, self._c_per_step, self.change_dim,
                                     dtype=torch.float32, device=device)

    def _start_batch(self, batch_size: int, layout) -> None:
        super()._start_batch(batch_size, layout)
        self._cbuf = None

    def _sketch(self, n: int, device):
        """(bucket index [n], sign [n]) of the fixed count sketch of n numbers into change_dim (identity when
        n <= change_dim: exact). Seeded by n only, so both images of a pair get the same map."""
        key = (n, str(device))
        if key not in self._sketches:
            if n <= self.change_dim:
                idx, sign = torch.arange(n), torch.ones(n)
            else:
                g = torch.Generator().manual_seed(CHANGE_SKETCH_SEED + n)
                idx = torch.randint(0, self.change_dim, (n,), generator=g)
                sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
            self._sketches[key] = (idx.to(device), sign.to(device))
        return self._sketches[key]

    def _sketch_gather(self, n: int, device):
        """The same count sketch laid out for a gather and a sum: (positions [D * L], signs [D * L], L), bucket b's
        members at b * L .. b * L + L - 1 (L = the largest bucket; padding: position 0 with sign 0, so a non-finite
        value there would reach every padded bucket of that vector, where index_add_ kept it in one: its distances are
        non-finite either way, and probe.stats.change leaves them out of the scene means). A gather and a
        row sum per call instead of `index_add_`, whose atomics into D buckets were 19 % of a klein 4B editing
        forward on a GPU (benchmarks/RESULTS.md); the same buckets and signs, sums in another order (float32)."""
        key = ("gather", n, str(device))
        if key not in self._sketches:
            idx, sign = (t.cpu() for t in self._sketch(n, "cpu"))
            d = self.change_dim
            order = torch.argsort(idx, stable=True)
            counts = torch.bincount(idx, minlength=d)
            width = int(counts.max())
            start = torch.cumsum(counts, 0) - counts
            b = idx[order]
            slot = b * width + (torch.arange(n) - start[b])
            pos = torch.zeros(d * width, dtype=torch.long)
            sgn = torch.zeros(d * width)
            pos[slot], sgn[slot] = order, sign[order]
            self._sketches[key] = (pos.to(device), sgn.to(device), width)
        return self._sketches[key]

    def _write_change(self, slot: int, col: int, x) -> None:
        """x [batch, k, n] -> its count sketch [batch, k, change_dim], written into the change buffer at columns
        col.. (zeroed per batch, and each (slot, column) is written by one forward)."""
        n = x.shape[-1]
        dst = self._cbuf[slot, :, col: col + x.shape[1]]
        if n <= self.change_dim:                    # exact: the vector itself, zero-padded
            dst[..., :n] = x
            return
        pos, sgn, width = self._sketch_gather(n, x.device)
        picked = x.index_select(-1, pos).to(torch.float32).mul_(sgn)       # [batch, k, D * L]
        buckets = picked.unflatten(-1, (self.change_dim, width))             # [batch, k, D, L]
        if dst.is_contiguous():                     # batch 1: straight into the buffer
            torch.sum(buckets, dim=-1, out=dst)
        else:
            dst.copy_(buckets.sum(-1))

    def _on_transformer(self, module, args, kwargs):
        super()._on_transformer(module, args, kwargs)
        if self.change_dim and self._slot >= 0:
            hs = kwargs.get("hidden_states", args[0] if args else None)
            lay = self.layout
            ref = hs[:, lay.n_img: lay.n_img + lay.n_ref]                    # [batch, n_ref, latent channels]
            self._write_change(self._slot, 0, ref.reshape(ref.shape[0], 1, -1))

    def _on_transformer_out(self, module, args, kwargs, output):
        """The transformer's output over the generated tokens (the predicted velocity): change column 1."""
        if self._slot < 0:
            return None
        out = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output)
        img = out[:, : self.layout.n_img]
        self._write_change(self._slot, 1, img.reshape(img.shape[0], 1, -1))
        return None

    def __enter__(self):
        super().__enter__()
        if self.change_dim:
            try:
                self._handles.append(self.transformer.register_forward_hook(self._on_transformer_out,
                                                                            with_kwargs=True))
            except Exception:
                self.remove()
                raise
        return self

    def collect_change(self) -> np.ndarray:
        """float32 numpy [batch, len(change_units), change_dim] (call right after `collect()`); one host copy."""
        if not self.change_dim:
            raise RuntimeError("this capture keeps no change vectors (change_dim = 0)")
        b = self._batch_size
        return np.ascontiguousarray(self._cbuf.transpose(0, 1).reshape(b, -1, self.change_dim).cpu().numpy())

    def _finish(self, flat):
        return flat.sqrt() if self.reducer == "rms" else flat

    def _per_token(self, x):
        """x: [batch, tokens, head, head_dim] -> per-token quantity [batch, tokens, head] (float32)."""

        if self.reducer == "rms":      # the sum of squares: the weights carry 1 / head_dim, _finish the root
            return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).square_()
        if self.reducer == "l2":
            return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32)
        if self.reducer == "mean_abs":
            return x.abs().mean(-1, dtype=torch.float32)
        return x.mean(-1, dtype=torch.float32)

    def _make_hook(self, site: Site):
        n_h, d_h = site.n_heads, site.head_dim
        off = self._offset[site.name]
        width = len(self._regions[site.kind]) * n_h

        def hook(module, args):
            slot = self._slot
            if slot < 0:
                return None
            x = args[0]
            self._check_site(site, x)
            lo, hi, w = self._weights[site.kind]
            heads = x[:, lo:hi, : n_h * d_h].unflatten(-1, (n_h, d_h))      # [batch, tokens, head, head_dim]
            v = torch.bmm(w if w.device == x.device else w.to(x.device), self._per_token(heads))  # [batch, regions, head]
            self._buf[slot, :, off: off + width] = v.flatten(1)
            if self.change_dim and site.kind != "double_txt":
                lay = self.layout
                col = self._coff[site.name]
                for k, region in enumerate(("img", "ref")):
                    sp = lay.span(site.kind, region)
                    hv = x[:, sp, : n_h * d_h].unflatten(-1, (n_h, d_h)).transpose(1, 2)   # [batch, head, tok, dim]
                    self._write_change(slot, col + k * n_h, hv.reshape(hv.shape[0], n_h, -1))
            self._reached.add((slot, site.name))
            return None

        return hook


class SliceCapture(_CaptureBase):
    """The card's protocol: RMS over sequence and channels of each `width`-channel slice.

    Every token of the hooked input counts (text padding, text, generated and reference tokens
    alike), as in the card's unmasked hook; each batch element is one prompt (the card ran one prompt
    per forward).
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
        self._set_columns([s.in_features // width for s in self.sites])

    def set_batch(self, batch_size: int, layout: TokenLayout | None = None) -> None:
        """Before each pipeline call. layout: the call's TokenLayout, to assert the token counts (editing
        calls: probe.klein.edit_capture.edit_layout); None skips the checks (slices count every token anyway)."""
        self._start_batch(batch_size, layout)

    def _make_hook(self, site: Site):
        w = self.width
        off = self._offset[site.name]
        n = site.in_features // w

        def hook(module, args):
            slot = self._slot
            if slot < 0:
                return None
            self._check_site(site, args[0])
            x = args[0].unflatten(-1, (-1, w))                      # [batch, tokens, slices, width]
            ms = torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).square_().mean(1) / w
            self._buf[slot, :, off: off + n] = ms.sqrt_()
            self._reached.add((slot, site.name))
            return None

        return hook
