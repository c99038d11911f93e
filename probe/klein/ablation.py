"""Mean-ablation of attention heads over exactly the tokens the probe measured for each unit.

    from probe.klein.ablation import HeadAblation
    with HeadAblation(pipe.transformer, ["double.3.img/h07", "single.9.txt/h02"]) as abl:
        abl.prepare(txt_len=512, n_img=1024, n_ref=1024, real_txt=[41, 12], forwards_per_step=2)
        pipe(image=ref, prompt=prompt, ...)           # every step, both CFG forwards

A unit `[sNN/]<group>/hNN` names a head and a token region (probe.klein.regions, C2): `double.{i}.img`
and `single.{i}` the generated-image tokens, `double.{i}.txt` and `single.{i}.txt` the real text
tokens of the forward's own prompt (padding never counts), `double.{i}.ref` / `single.{i}.ref` the
reference-image tokens. At every forward, in the input of the unit's output projection
(a forward pre-hook, the same boundary the capture hooks), the head's 128 channels at each token of
that region are replaced by their mean over the region's tokens; tokens outside the region and
other heads are untouched. The step prefix is ignored: ablation acts at every step.

Under CFG klein runs the conditional forward, then the unconditional one (prompt ""), each with its
own real text length: `real_txt` gives one length per forward of a step, in that order. Token
counts are checked against the hooked inputs at every forward (`TokenLayout.check`).

Hook state lives in this object; hooks are removed on exit, also after an error. No host sync:
means and replacements are tensor ops on the device.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from probe.klein.capture import Site, head_sites
from probe.klein.regions import TokenLayout, parse_unit, site_kind

__all__ = ["HeadAblation", "ABLATION_DEFINITION"]

ABLATION_DEFINITION = ("token-region mean ablation (probe.klein.ablation.HeadAblation): at every step and in both CFG "
                       "forwards, the head's output at each token of the unit's region (img: generated-image tokens; "
                       "txt: the forward's real text tokens, padding excluded; ref: reference-image tokens) is "
                       "replaced by its mean over that region")


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

    def prepare(self, txt_len: int, n_img: int, n_ref: int, real_txt: Sequence, forwards_per_step: int = 1) -> None:
        """Token layout of the next pipeline call. real_txt: per forward of a step (conditional first),
        the real text length (an int, or a sequence of ints per batch element)."""
        if forwards_per_step not in (1, 2):
            raise ValueError("forwards_per_step is 1 (no CFG) or 2 (CFG: conditional, then unconditional)")
        if len(real_txt) != forwards_per_step:
            raise ValueError(f"real_txt needs one entry per forward of a step ({forwards_per_step}), got {len(real_txt)}")
        self._layout = TokenLayout(int(txt_len), int(n_img), int(n_ref))
        lengths = [torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in real_txt]
        if any(int(x.min()) < 1 or int(x.max()) > txt_len for x in lengths):
            raise ValueError(f"real text lengths must lie in 1..{txt_len}: {[x.tolist() for x in lengths]}")
        self._real_txt = lengths
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
        """[batch, txt_len, 1] real-token indicator of the running forward, and its counts [batch, 1, 1]."""
        key = ("txt", self._role, batch, str(device), dtype)
        got = self._cache.get(key)
        if got is None:
            lengths = self._real_txt[self._role]
            if lengths.numel() == 1:
                lengths = lengths.expand(batch)
            elif lengths.numel() != batch:
                raise RuntimeError(f"ablation was prepared for {lengths.numel()} prompts, the forward has {batch}")
            pos = torch.arange(self._layout.txt_len)
            m = (pos[None, :] < lengths[:, None]).to(device=device, dtype=dtype)[..., None]
            got = (m, m.sum(1, keepdim=True))
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
