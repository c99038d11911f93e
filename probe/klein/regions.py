"""Token regions of klein's transformer and the unit-group names built on them: named once, here.

Every capture, ablation and report names a token region with one of `REGIONS`:

    img  # generated-image tokens (the latents being denoised)
    txt  # real text tokens of the prompt (klein pads to max_sequence_length and gives the
         #   transformer no mask: padding is never part of a region)
    ref  # reference-image tokens (editing: the pipeline appends them after the generated tokens)

Where each region sits in the input of each hooked projection (one forward, batch b):

    double-block image stream, transformer_blocks.{i}.attn.to_out.0 input
        [b, n_img + n_ref, heads * head_dim]              = [ img | ref ]
    double-block text stream, transformer_blocks.{i}.attn.to_add_out input
        [b, txt_len, heads * head_dim]                    = [ txt (real) | padding ]
    single block, single_transformer_blocks.{i}.attn.to_out input (fused: heads, then MLP channels)
        [b, txt_len + n_img + n_ref, heads * head_dim + mlp] = [ txt (real) | padding | img | ref ]

Unit groups (a unit is `s{step:02d}/{group}/h{head:02d}`) map to (site, region):

    double.{i}.img -> site double.{i}.img, img      double.{i}.ref  -> site double.{i}.img, ref
    double.{i}.txt -> site double.{i}.txt, txt
    single.{i}     -> site single.{i}, img   (also written single.{i}.img)
    single.{i}.txt -> site single.{i}, txt          single.{i}.ref  -> site single.{i}, ref

Sites are the hooked modules (`probe.klein.capture.Site.name`); `group_name(site, region)` is the inverse
of `group_site_region(group)` and gives the canonical spelling (`single.{i}` for image tokens).
"""
from __future__ import annotations

from dataclasses import dataclass

REGIONS = ("img", "txt", "ref")
SITE_KINDS = ("double_img", "double_txt", "single")

# which regions each site kind carries
_KIND_REGIONS = {"double_img": ("img", "ref"), "double_txt": ("txt",), "single": ("txt", "img", "ref")}


def site_kind(site: str) -> str:
    """'double.3.img' -> 'double_img', 'double.3.txt' -> 'double_txt', 'single.9' -> 'single'."""
    parts = site.split(".")
    if len(parts) == 3 and parts[0] == "double" and parts[1].isdigit() and parts[2] in ("img", "txt"):
        return f"double_{parts[2]}"
    if len(parts) == 2 and parts[0] == "single" and parts[1].isdigit():
        return "single"
    raise ValueError(f"not a capture site name: {site!r} (expected double.<i>.img, double.<i>.txt or single.<i>)")


def group_site_region(group: str) -> tuple[str, str]:
    """Unit group -> (site name, region). 'double.3.ref' -> ('double.3.img', 'ref'); 'single.9' -> ('single.9', 'img')."""
    parts = group.split(".")
    if len(parts) == 3 and parts[0] == "double" and parts[1].isdigit() and parts[2] in REGIONS:
        stream = "txt" if parts[2] == "txt" else "img"
        return f"double.{parts[1]}.{stream}", parts[2]
    if parts[0] == "single" and len(parts) in (2, 3) and parts[1].isdigit():
        region = parts[2] if len(parts) == 3 else "img"
        if region in REGIONS:
            return f"single.{parts[1]}", region
    raise ValueError(f"not a unit group: {group!r} (expected double.<i>.{{img,txt,ref}} or single.<i>[.txt|.ref])")


def group_name(site: str, region: str) -> str:
    """(site, region) -> canonical unit group; raises if the site does not carry that region."""
    kind = site_kind(site)
    if region not in _KIND_REGIONS[kind]:
        raise ValueError(f"site {site!r} ({kind}) has no {region!r} tokens; it carries {_KIND_REGIONS[kind]}")
    if kind == "single":
        return site if region == "img" else f"{site}.{region}"
    block = site.split(".")[1]
    return f"double.{block}.{region}"


@dataclass(frozen=True)
class TokenLayout:
    """Token counts of one forward: everything needed to find a region in a hooked input.

    txt_len: padded text length (klein: max_sequence_length, 512); real text tokens are given per
    batch element by a mask, not by this layout. n_img: generated-image tokens; n_ref: reference tokens
    (0 without a reference image).
    """
    txt_len: int
    n_img: int
    n_ref: int = 0

    def __post_init__(self):
        if self.txt_len < 0 or self.n_img < 1 or self.n_ref < 0:
            raise ValueError(f"TokenLayout needs txt_len >= 0, n_img >= 1, n_ref >= 0: {self}")

    def seq_len(self, kind: str) -> int:
        """Length of the hooked input's token axis for a site kind."""
        if kind == "double_img":
            return self.n_img + self.n_ref
        if kind == "double_txt":
            return self.txt_len
        if kind == "single":
            return self.txt_len + self.n_img + self.n_ref
        raise ValueError(f"unknown site kind {kind!r}; one of {SITE_KINDS}")

    def span(self, kind: str, region: str) -> slice:
        """Token slice of `region` in the hooked input of a `kind` site. For `txt` the slice covers
        the padded text (0..txt_len); weight it by the real-token mask."""
        if region not in _KIND_REGIONS.get(kind, ()):
            raise ValueError(f"a {kind} site has no {region!r} tokens")
        off = self.txt_len if kind == "single" else 0
        if region == "txt":
            return slice(0, self.txt_len)
        if region == "img":
            return slice(off, off + self.n_img)
        return slice(off + self.n_img, off + self.n_img + self.n_ref)

    def check(self, kind: str, seq_len: int, where: str = "") -> None:
        """Raise if a hooked input's token axis does not have the length this layout predicts."""
        want = self.seq_len(kind)
        if seq_len != want:
            raise RuntimeError(f"{where or kind}: hooked input has {seq_len} tokens, the layout {self} predicts "
                               f"{want} for a {kind} site: the pipeline's sequence layout is not what the capture assumes")


@dataclass(frozen=True)
class UnitName:
    """A parsed head unit name: `s12/double.3.img/h07` -> step 12, group double.3.img, head 7."""
    step: int | None      # None when the name has no `sNN/` prefix (ablation acts at every step)
    group: str            # canonical group (single.{i}.img is written single.{i})
    head: int
    site: str             # the hooked module's site name
    region: str           # img | txt | ref

    @property
    def head_name(self) -> str:
        """The unit without its step: `double.3.img/h07` (what ablation and selection key on)."""
        return f"{self.group}/h{self.head:02d}"


def parse_unit(name: str) -> UnitName:
    """Parse `[sNN/]<group>/hNN`; raises ValueError for card slices (`/c0000-0015`) and anything else."""
    parts = str(name).split("/")
    step = None
    if len(parts) == 3 and parts[0][:1] == "s" and parts[0][1:].isdigit():
        step = int(parts[0][1:])
        parts = parts[1:]
    if len(parts) != 2 or parts[1][:1] != "h" or not parts[1][1:].isdigit():
        raise ValueError(f"not a head unit name: {name!r} (expected e.g. s12/double.3.img/h07 or single.5/h11; "
                         "card slices such as .../c0000-0015 are not heads)")
    site, region = group_site_region(parts[0])
    return UnitName(step, group_name(site, region), int(parts[1][1:]), site, region)
