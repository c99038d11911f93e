"""The image probe's change classes (probe/stats/change.py) and the change vectors they are made from
(probe.klein.capture CHANGE_VECTORS): known selective units found, the input's own change divided out, captures.npz
round trip, exact vectors equal to the heads' outputs, and the count sketch's distances unbiased."""
from __future__ import annotations

import numpy as np
import pytest

from probe.io.captures import Captures, CapturesError, ChangeDistances, load_captures, save_captures
from probe.stats.change import change_classes, unit_gains

UNITS = ["s00/input.ref", "s00/output.img", "s00/single.0/h00", "s00/single.0/h01", "s00/single.0/h02", "s00/double.0.ref/h00",
         "s03/input.ref", "s03/single.0/h00"]
# true gains (unit distance / input distance) for (lighting, colour)
GAINS = {"s00/output.img": (0.2, 1.5),         # the network's own answer: reported, never counted
         "s00/single.0/h00": (0.1, 1.0),       # keeps colour, drops light: albedo-selective
         "s00/single.0/h01": (1.0, 1.0),       # copies its input: neither
         "s00/single.0/h02": (1.2, 0.15),      # keeps light, drops colour: lighting-selective
         "s00/double.0.ref/h00": (0.6, 1.0),   # drops some light, not below the margin (0.5): neither
         "s03/single.0/h00": (0.05, 0.8)}      # at another step, against that step's input: albedo-selective


def _distances(n_scenes=12, light_scale=3.0, seed=0):
    """Sample-level distances of a lighting and a colour contrast: 2 lighting pairs and 3 colour pairs per scene, the
    input moving `light_scale` times more under light than under colour, each unit moving gain x input x noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, per, scale, k in (("lighting", 2, light_scale, 0), ("albedo", 3, 1.0, 1)):
        rows, scenes = [], []
        for s in range(n_scenes):
            for _ in range(per):
                inp = scale * rng.uniform(0.5, 2.0)
                rows.append([inp if u.endswith("input.ref") else GAINS[u][k] * inp * rng.uniform(0.8, 1.25)
                             for u in UNITS])
                scenes.append(f"scene{s:02d}")
        out[name] = (np.array(rows, dtype=np.float32), np.array(scenes))
    return ChangeDistances(np.array(UNITS), 512, out)


def test_known_selective_units_are_found_and_the_input_change_is_divided_out():
    cc = change_classes(_distances(), margin=0.5, alpha=0.05)
    got = dict(zip(cc.units, cc.classes))
    assert got == {"s00/input.ref": "input", "s03/input.ref": "input", "s00/output.img": "output",
                   "s00/single.0/h00": "albedo-selective",
                   "s00/single.0/h01": "neither", "s00/single.0/h02": "lighting-selective",
                   "s00/double.0.ref/h00": "neither", "s03/single.0/h00": "albedo-selective"}
    i = UNITS.index("s00/single.0/h00")
    assert cc.gain_lighting[i] == pytest.approx(0.1, rel=0.1) and cc.gain_albedo[i] == pytest.approx(1.0, rel=0.1)
    assert cc.input_ratio == pytest.approx(3.0, rel=0.15)      # light moved the input 3x more than colour did
    s = cc.summary()
    assert s["counts"] == {"lighting-selective": 1, "albedo-selective": 2, "neither": 2} and s["n_units"] == 5
    assert s["n_scenes"] == 12 and s["n_sample_pairs"] == {"lighting": 24, "albedo": 36}
    assert {b["block"]: b["albedo-selective"] for b in s["per_block"]} == {"single.0": 2, "double.0": 0}
    assert 0 < s["power"]["at_ratio_0"] <= 1
    out = s["output"]["s00/output.img"]
    assert out["ratio_lighting_to_albedo"] == pytest.approx(0.2 / 1.5, rel=0.15)
    assert out["class_if_it_were_a_unit"] == "albedo-selective"


def test_raw_distances_would_call_a_copying_unit_lighting_selective():
    """Without dividing by the input's change, a unit that copies its input looks 3x more moved by light (the input
    moved 3x more): the gain is what makes light and colour comparable."""
    ch = _distances(light_scale=3.0)
    i = UNITS.index("s00/single.0/h01")
    raw = {n: d[:, i].mean() for n, (d, _) in ch.contrasts.items()}
    assert raw["lighting"] > 2.5 * raw["albedo"]
    assert dict(zip(change_classes(ch).units, change_classes(ch).classes))["s00/single.0/h01"] == "neither"
    g = unit_gains(ch.contrasts["lighting"][0], UNITS)
    assert np.allclose(g[:, UNITS.index("s03/input.ref")], 1.0)
    with pytest.raises(ValueError, match="no input.ref yardstick"):
        unit_gains(np.ones((2, 2)), ["s00/single.0/h00", "s01/input.ref"])


def test_captures_round_trip_with_change_distances(tmp_path):
    ch = _distances(n_scenes=3)
    n_l = len(ch.contrasts["lighting"][1])
    imgs = [f"img{i}" for i in range(4)]
    a = np.zeros((3, 2), np.float32)
    pairs = {"lighting": (np.array([imgs[0]] * n_l), np.array([imgs[1]] * n_l))}
    from probe.io.captures import ImageValues

    kw = dict(a=a, b=a, units=np.array(["u0", "u1"]), pair_ids=np.array(["p0", "p1", "p2"]),
              images=ImageValues(np.zeros((4, 2), np.float32), np.array(imgs), np.array(["s"] * 4)),
              sample_pairs=pairs, meta={"stimuli": "images"})
    caps = Captures(**kw, change=ch)
    back = load_captures(save_captures(tmp_path / "captures.npz", caps))
    assert list(back.change.units) == UNITS and back.change.dim == 512
    for name, (d, s) in ch.contrasts.items():
        np.testing.assert_array_equal(back.change.contrasts[name][0], d)
        assert list(back.change.contrasts[name][1]) == list(s)
    bad = ChangeDistances(np.array(UNITS), 512, {"lighting": (ch.contrasts["lighting"][0][:-1],
                                                              ch.contrasts["lighting"][1][:-1])})
    with pytest.raises(CapturesError, match="one per sample-level pair"):
        Captures(**kw, change=bad)


# --------------------------------------------------------------------------------------- the vectors themselves

def _reference(seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def test_exact_change_vectors_are_the_heads_outputs_and_the_reference_latents(tiny_pipe):
    """With change_dim >= tokens x head_dim every unit's vector is its head's output over its region's tokens,
    flattened (zero-padded), and input.ref is the transformer's input over the reference tokens."""
    import torch

    from probe.klein.capture import HeadCapture, head_sites
    from probe.klein.edit_capture import capture_edit

    tr = tiny_pipe.transformer
    sites = head_sites(tr)
    single = next(s for s in sites if s.kind == "single")
    raw = {}

    def grab(module, args):
        raw.setdefault("single", args[0].detach().clone())

    def grab_input(module, args, kwargs):
        raw.setdefault("input", kwargs["hidden_states"].detach().clone())

    def grab_output(module, args, kwargs, output):
        raw.setdefault("output", (output[0] if isinstance(output, tuple) else output.sample).detach().clone())

    mod = dict(tr.named_modules())[single.module]
    h1 = mod.register_forward_pre_hook(grab)
    h2 = tr.register_forward_pre_hook(grab_input, with_kwargs=True)
    h3 = tr.register_forward_hook(grab_output, with_kwargs=True)
    try:
        with HeadCapture(tr, sites, [0], 1, ref_tokens=True, change_dim=4096) as cap:
            capture_edit(tiny_pipe, cap, _reference(), "make it flat", steps=1, guidance=1.0, seeds=[3])
            vec = cap.collect_change()
    finally:
        h1.remove()
        h2.remove()
        h3.remove()
    lay = cap.layout
    names = cap.change_units
    assert vec.shape == (1, len(names), 4096) and names[:2] == ["s00/input.ref", "s00/output.img"]
    assert not any(".txt" in n for n in names)
    x = raw["single"][0]
    hd, nh = single.head_dim, single.n_heads
    for region, group in (("img", single.name), ("ref", f"{single.name}.ref")):
        sp = lay.span("single", region)
        for h in range(nh):
            want = x[sp, h * hd:(h + 1) * hd].reshape(-1).float().numpy()
            got = vec[0, names.index(f"s00/{group}/h{h:02d}")]
            np.testing.assert_allclose(got[: want.size], want, rtol=1e-6, atol=1e-7)
            assert not got[want.size:].any()
    ref = raw["input"][0, lay.n_img: lay.n_img + lay.n_ref].reshape(-1).float().numpy()
    np.testing.assert_allclose(vec[0, 0, : ref.size], ref, rtol=1e-6, atol=1e-7)
    gen = raw["output"][0, : lay.n_img].reshape(-1).float().numpy()
    np.testing.assert_allclose(vec[0, 1, : gen.size], gen, rtol=1e-6, atol=1e-7)
    assert torch.is_tensor(raw["input"])


def test_count_sketch_distances_are_unbiased(tiny_pipe):
    """Longer vectors than change_dim are count-sketched with one fixed map per length: squared distances are kept
    on average, with relative spread about sqrt(2 / D)."""
    import torch

    from probe.klein.capture import HeadCapture, head_sites

    cap = HeadCapture(tiny_pipe.transformer, head_sites(tiny_pipe.transformer), [0], 1, ref_tokens=True,
                      change_dim=64)
    cap._batch_size = 1
    g = torch.Generator().manual_seed(0)
    ratios = []
    for _ in range(200):
        cap._cbuf = torch.zeros(1, 1, 2, 64)          # [steps, batch, columns, D], zeroed per batch as in a run
        x = torch.randn(2, 1, 2048, generator=g)
        cap._write_change(0, 0, x[:1])
        cap._write_change(0, 1, x[1:])
        s = cap._cbuf[0, 0]
        ratios.append(float((s[0] - s[1]).square().sum() / (x[0] - x[1]).square().sum()))
    ratios = np.array(ratios)
    assert abs(ratios.mean() - 1) < 0.06 and 0.1 < ratios.std() < 0.3      # sqrt(2/64) = 0.18
    idx1, sign1 = cap._sketch(2048, "cpu")
    idx2, sign2 = cap._sketch(2048, "cpu")
    assert torch.equal(idx1, idx2) and torch.equal(sign1, sign2)


def test_sketch_written_by_gather_is_the_count_sketch(tiny_pipe):
    """The capture writes sketches with a gather and a row sum (fast on a GPU); they are the count sketch defined by
    `_sketch`'s buckets and signs (index_add_), into a buffer column block that is not contiguous (batch 3), in
    float32 and from bfloat16 activations alike."""
    import torch

    from probe.klein.capture import HeadCapture, head_sites

    cap = HeadCapture(tiny_pipe.transformer, head_sites(tiny_pipe.transformer), [0], 1, ref_tokens=True,
                      change_dim=64)
    cap._batch_size = 3
    g = torch.Generator().manual_seed(1)
    for n, dtype in ((2048, torch.float32), (5000, torch.bfloat16)):
        x = torch.randn(3, 4, n, generator=g).to(dtype)
        cap._cbuf = torch.zeros(1, 3, 6, 64)
        cap._write_change(0, 1, x)
        idx, sign = cap._sketch(n, "cpu")
        want = torch.zeros(3, 4, 64).index_add_(2, idx, x.float() * sign)
        torch.testing.assert_close(cap._cbuf[0, :, 1:5], want, rtol=1e-5, atol=1e-5)
        assert not cap._cbuf[0, :, 0].any() and not cap._cbuf[0, :, 5].any()
        pos, sgn, width = cap._sketch_gather(n, "cpu")
        assert pos.numel() == 64 * width and int((sgn != 0).sum()) == n
