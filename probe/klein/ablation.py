"""Mean-ablation of attention heads over exactly the tokens the probe measured for each unit.

    from probe.klein.ablation import HeadAblation
    with HeadAblation(pipe.transformer, ["double.3.img/h07", "single.9.txt/h02"]) as abl:
        abl.prepare(txt_len=512, n_img=1024, n_ref=1024, real_txt=[41, 12], forwards_per_step=2)
        pipe(image=ref, prompt=prompt, ...)           # every step, both CFG forwards

A unit `[sNN/]<group>/hNN` names a head and a token region (probe.klein.regions, C2): `double.{i}.img`
and `single.{i}` the generated-image tokens, `double.{i}.txt` and `single.{i}.txt` the text tokens of
the forward's own prompt that the probe measured (`text_tokens` "prompt": the prompt's own tokens, chat
template and padding left out; "all": every non-padding token, as probes before issue 17 measured),
`double.{i}.ref` / `single.{i}.ref` the reference-image tokens. At every forward, in the input of the unit's output projection
(a forward pre-hook, the same boundary the capture hooks), the head's 128 channels at each token of
that region are replaced by their mean over the region's tokens; tokens outside the region and
other heads are untouched. The step prefix is ignored: ablation acts at every step.

Under CFG klein runs the conditional forward, then the unconditional one (prompt ""), each with its
own text tokens: `txt_spans` gives one token span [start, stop) per forward of a step, in that order
(`real_txt` lengths are spans from 0: right padding); `ablation_layout` builds them for an edit and
asserts that the tokenizer pads on the right. The unconditional prompt "" has no tokens of its own,
so with text_tokens "prompt" its forward leaves `.txt` heads untouched. Token counts are checked
against the hooked inputs at every forward (`TokenLayout.check`).

Hook state lives in this object; hooks are removed on exit, also after an error. No host sync:
means and replacements are tensor ops on the device.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from probe.klein.capture import Site, head_sites
from probe.klein.regions import TokenLayout, parse_unit, site_kind

__all__ = ["HeadAblation", "ABLATION_DEFINITION", "ablation_definition", "ablation_layout"]

ABLATION_DEFINITION = ("token-region mean ablation (probe.klein.ablation.HeadAblation): at every step and in both CFG "
                       "forwards, the head's output at each token of the unit's region (img: generated-image tokens; "
                       "txt: the forward's real text tokens, padding excluded; ref: reference-image tokens) is "
                       "replaced by its mean over that region")
_TXT_REGION = {"prompt": "the forward's own prompt tokens, chat template and padding excluded (the unconditional "
                         "prompt \"\" has none, so its forward leaves txt heads untouched)",
               "all": "the forward's real text tokens, padding excluded"}


def ablation_definition(text_tokens: str = "all") -> str:
    """ABLATION_DEFINITION with the text region the probe measured (`probe.klein.capture.TEXT_TOKENS`)."""
    return ABLATION_DEFINITION.replace("the forward's real text tokens, padding excluded", _TXT_REGION[text_tokens])


def ablation_layout(pipe, prompt: str, n_img: int, n_ref: int, cfg_on: bool, max_sequence_length: int,
                    text_tokens: str = "prompt") -> dict:
    """`HeadAblation.prepare` keywords for one edit of `prompt` (CFG: the conditional forward, then the
    unconditional one with klein's prompt ""): the token layout and, per forward, the span of the text tokens
    that `.txt` units were measured on. Raises ValueError unless the tokenizer pads on the right."""
    from probe.klein.capture import TEXT_TOKENS, check_right_padding, prompt_token_spans, text_token_mask

    if text_tokens not in TEXT_TOKENS:
        raise ValueError(f"text_tokens must be one of {TEXT_TOKENS}, got {text_tokens!r}")
    check_right_padding(pipe.tokenizer, "head ablation")
    prompts = [prompt, ""] if cfg_on else [prompt]
    if text_tokens == "all":
        spans = [(0, int(n)) for n in text_token_mask(pipe, prompts, max_sequence_length).sum(1)]
    else:
        spans = prompt_token_spans(pipe.tokenizer, prompts, max_sequence_length)
    return {"txt_len": int(max_sequence_length), "n_img": int(n_img), "n_ref": int(n_ref), "txt_spans": spans,
            "forwards_per_step": 2 if cfg_on else 1}


class HeadAblation:
    """Token-region mean ablation of head units; a context manager (see the module docstring)."""

    def __init__(self, transformer, units: Sequence[str]):
        self.transformer = transformer
        by_site = {s.name: s for s in head_sites(transformer)}
        plan: dict[str, dict[str, list[int]]] = {}
        for u in units:
            parsed = parse_unit(u)
            site = by_site.get(parsed.site)
            if site is None:
                raise KeyError(f"unit {u!r}: no capture site {parsed.site!r} in this transformer")
            if parsed.head >= site.n_heads:
                raise KeyError(f"unit {u!r}: head {parsed.head} >= {site.n_heads} heads of {parsed.site}")
            heads = plan.setdefault(parsed.site, {}).setdefault(parsed.region, [])
            if parsed.head not in heads:
                heads.append(parsed.head)
        self.units = [parse_unit(u).head_name for u in units]
        self.sites = {name: by_site[name] for name in plan}
        self.plan = {s: {r: sorted(h) for r, h in regions.items()} for s, regions in plan.items()}
        self._hooks = contextlib.ExitStack()
        self._layout: TokenLayout | None = None
        self._real_txt: list[torch.Tensor] = []
        self._fps = 1
        self._calls = 0
        self._role = 0
        self._cache: dict = {}

    def prepare(self, txt_len: int, n_img: int, n_ref: int, real_txt: Sequence | None = None,
                forwards_per_step: int = 1, txt_spans: Sequence | None = None) -> None:
        """Token layout of the next pipeline call; per forward of a step (conditional first) the text tokens of
        `.txt` units, either `txt_spans` (a (start, stop) pair, or one pair per batch element) or `real_txt`
        (a length, or one per batch element: positions 0 .. length - 1, i.e. right padding)."""
        if forwards_per_step not in (1, 2):
            raise ValueError("forwards_per_step is 1 (no CFG) or 2 (CFG: conditional, then unconditional)")
        if (real_txt is None) == (txt_spans is None):
            raise ValueError("give the text tokens of each forward either as txt_spans or as real_txt lengths")
        if txt_spans is None:
            spans = [torch.stack([torch.zeros_like(x), x], -1) for x in
                     (torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in real_txt)]
            if any(int(s[:, 1].min()) < 1 for s in spans):
                raise ValueError(f"real text lengths must lie in 1..{txt_len}: {[s[:, 1].tolist() for s in spans]}")
        else:
            spans = [torch.as_tensor(s, dtype=torch.long).reshape(-1, 2) for s in txt_spans]
        if len(spans) != forwards_per_step:
            raise ValueError(f"the text tokens need one entry per forward of a step ({forwards_per_step}), "
                             f"got {len(spans)}")
        if any(int(s.min()) < 0 or int(s.max()) > txt_len or bool((s[:, 1] < s[:, 0]).any()) for s in spans):
            raise ValueError(f"text token spans must lie in 0..{txt_len}: {[s.tolist() for s in spans]}")
        self._layout = TokenLayout(int(txt_len), int(n_img), int(n_ref))
        self._real_txt = spans
        self._fps = forwards_per_step
        self._calls = 0
        self._cache.clear()

    # --------------------------------------------------------------------------- hooks

    def _on_transformer(self, module, args, kwargs):
        if self._layout is None:
            raise RuntimeError("call HeadAblation.prepare(...) before running the pipeline under an ablation")
        self._role = self._calls % self._fps
        self._calls += 1
        hs = kwargs.get("hidden_states", args[0] if args else None)
        ehs = kwargs.get("encoder_hidden_states")
        lay = self._layout
        if hs is not None:
            lay.check("double_img", int(hs.shape[1]), "transformer hidden_states")
        if ehs is not None:
            lay.check("double_txt", int(ehs.shape[1]), "transformer encoder_hidden_states")

    def _txt_weights(self, batch: int, device, dtype):
        """[batch, txt_len, 1] indicator of the running forward's measured text tokens, and its counts
        [batch, 1, 1] (at least 1: a forward without such tokens keeps its values)."""
        key = ("txt", self._role, batch, str(device), dtype)
        got = self._cache.get(key)
        if got is None:
            spans = self._real_txt[self._role]
            if spans.shape[0] == 1:
                spans = spans.expand(batch, 2)
            elif spans.shape[0] != batch:
                raise RuntimeError(f"ablation was prepared for {spans.shape[0]} prompts, the forward has {batch}")
            pos = torch.arange(self._layout.txt_len)
            m = ((pos[None, :] >= spans[:, :1]) & (pos[None, :] < spans[:, 1:])).to(device=device, dtype=dtype)[..., None]
            got = (m, m.sum(1, keepdim=True).clamp_min(1))
            self._cache[key] = got
        return got

    def _channels(self, site: Site, heads: list[int], device):
        key = ("chan", site.name, tuple(heads), str(device))
        if key not in self._cache:
            d = site.head_dim
            self._cache[key] = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]).to(device)
        return self._cache[key]

    def _make_hook(self, site: Site):
        regions = self.plan[site.name]
        kind = site_kind(site.name)

        def hook(module, args):
            x = args[0]
            self._layout.check(kind, int(x.shape[1]), site.module)
            x = x.clone()
            for region, heads in regions.items():
                idx = self._channels(site, heads, x.device)
                span = self._layout.span(kind, region)
                part = x[:, span].index_select(-1, idx).float()        # [b, tokens, len(idx)], float32 means
                if region == "txt":
                    m, n = self._txt_weights(x.shape[0], x.device, torch.float32)
                    mean = (part * m).sum(1, keepdim=True) / n
                    new = part * (1 - m) + mean * m                    # padding positions keep their values
                else:
                    new = part.mean(1, keepdim=True).expand_as(part)
                x[:, span, idx] = new.to(x.dtype)
            return (x, *args[1:])

        return hook

    def __enter__(self):
        modules = dict(self.transformer.named_modules())
        hooks = [(self.transformer, self._on_transformer, True)]
        hooks += [(modules[site.module], self._make_hook(site), False) for site in self.sites.values()]
        with contextlib.ExitStack() as stack:          # a failing registration removes the ones before it
            for module, fn, with_kwargs in hooks:
                stack.callback(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs).remove)
            self._hooks = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        self._hooks.close()
