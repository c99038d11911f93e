"""probe.design.image_stimuli on fake render folders (no torch, no model): the three contrasts, their ground-truth
orientation, averaging over scenes, the design's Stimulus objects, errors; planted units under the orientation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probe.design.image_stimuli import CONTRASTS, ImageDesign, StimuliError, build_image_plan
from probe.io.captures import load_captures, save_captures
from probe.stats.analysis import analyse_captures, analyse_images
from probe.stats.config import StatsConfig
from render.imageio import read_exr, write_exr
from tests.fakes import write_synthetic_render_variants

SCENES, LIGHTS = ("alpha", "beta", "gamma"), ("key", "rim", "top")


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    """3 base scenes x (original + 2 variants) x 3 lightings = 27 samples at 16 x 16."""
    return write_synthetic_render_variants(tmp_path_factory.mktemp("render"), scenes=SCENES, lightings=LIGHTS,
                                           variants=2, h=16, w=16)


def _values(plan, n_units=5, seed=0):
    return np.random.default_rng(seed).normal(size=(len(plan.images), n_units)).astype(np.float32)


def _f(plan, values, key):
    return values[[s.key for s in plan.images].index(key)].astype(np.float64)


def _set_shading_contrast(root, gamma):
    """Rewrite every sample's shading as shading ** gamma[(scene, lighting)]: std of ln(shading) scales by gamma."""
    m = json.loads((root / "manifest.json").read_text())
    for e in m["samples"]:
        path = root / e["shading"]
        s = read_exr(path)[..., :3]
        write_exr(path, np.where(s > 0, np.power(np.maximum(s, 1e-6), gamma[(e["base_scene"], e["lighting"])]), 0.0)
                  .astype(np.float32))


def test_images_cover_every_sample_once(render):
    plan = build_image_plan(render)
    assert len(plan.samples) == 27 and len(plan.images) == 54
    assert [s.key for s in plan.images][:2] == ["alpha__key/render", "alpha__key/albedo"]
    assert len({s.key for s in plan.images}) == 54
    by_kind = {s.kind: s.path.name for s in plan.images}
    assert by_kind == {"render": "image_srgb.png", "albedo": "albedo_srgb.png"}
    assert all(s.path.is_file() for s in plan.images)
    v = next(s for s in plan.samples if s.id == "beta~c2__rim")
    assert (v.scene, v.base_scene, v.variant, v.lighting) == ("beta~c2", "beta", 2, "rim")
    assert [c.name for c in plan.pairings] == list(CONTRASTS) and plan.scenes == SCENES
    for c in plan.pairings:  # pairs over base scenes by default, one per scene
        assert c.pairs_over == "scenes" and [p.id for p in c.pairs] == list(SCENES) == c.clusters
        assert "One pair per base scene" in c.definition and not c.clustered


def test_scene_pairs_average_exactly_the_stated_samples(render):
    plan = build_image_plan(render)
    values = _values(plan)
    f = lambda key: _f(plan, values, key)  # noqa: E731
    versions, others = ("beta", "beta~c1", "beta~c2"), ("rim", "top")
    i = SCENES.index("beta")

    a, b = plan.arrays("render_vs_albedo", values)
    ids = [f"{v}__{l}" for v in versions for l in LIGHTS]
    np.testing.assert_allclose(a[i], np.mean([f(f"{s}/render") for s in ids], 0), rtol=1e-6)
    np.testing.assert_allclose(b[i], np.mean([f(f"{s}/albedo") for s in ids], 0), rtol=1e-6)

    # the fake's lightings have mirrored shading (equal contrast up to rounding): a tie, so A = "key" by name
    c = plan.truth.shading_contrast["beta"]
    assert abs(c["key"] - c["rim"]) < 1e-6 * c["key"]
    a, b = plan.arrays("lighting", values)   # A: each version under "key", B: under rim and top
    np.testing.assert_allclose(a[i], np.mean([f(f"{v}__key/render") for v in versions], 0), rtol=1e-6)
    np.testing.assert_allclose(b[i], np.mean([f(f"{v}__{l}/render") for v in versions for l in others], 0), rtol=1e-6)

    # albedo: A = of (original, variant k) the colour set with the higher ground-truth albedo luminance
    lum = plan.truth.albedo_value
    a, b = plan.arrays("albedo", values)
    exp_a, exp_b = [], []
    for k in (1, 2):
        hi, lo = ("beta", f"beta~c{k}") if lum["beta"] >= lum[f"beta~c{k}"] else (f"beta~c{k}", "beta")
        exp_a += [f(f"{hi}__{l}/render") for l in LIGHTS]
        exp_b += [f(f"{lo}__{l}/render") for l in LIGHTS]
    np.testing.assert_allclose(a[i], np.mean(exp_a, 0), rtol=1e-6)
    np.testing.assert_allclose(b[i], np.mean(exp_b, 0), rtol=1e-6)
    assert a.shape == b.shape == (3, values.shape[1]) and a.dtype == np.float32
    assert lum["beta"] != lum["beta~c1"]


def test_orientation_follows_ground_truth_not_names(tmp_path):
    """The lighting with the higher shading contrast is A whatever its name; the albedo side with the higher
    luminance (or chroma) is A whether it is the original or the variant."""
    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta"), lightings=("key", "rim"),
                                           variants=1, h=16, w=16)
    _set_shading_contrast(root, {("alpha", "key"): 0.5, ("alpha", "rim"): 2.0, ("beta", "key"): 3.0,
                                 ("beta", "rim"): 1.0})
    plan = build_image_plan(root, pairs_over="samples")
    c = plan.truth.shading_contrast
    assert c["alpha"]["rim"] > c["alpha"]["key"] and c["beta"]["key"] > c["beta"]["rim"]
    pairs = {(p.a[0], p.b[0]) for p in plan.pairing("lighting").pairs}
    assert pairs == {("alpha__rim/render", "alpha__key/render"), ("alpha~c1__rim/render", "alpha~c1__key/render"),
                     ("beta__key/render", "beta__rim/render"), ("beta~c1__key/render", "beta~c1__rim/render")}
    for order in ("luminance", "chroma"):
        plan = build_image_plan(root, pairs_over="samples", albedo_order=order, contrasts=("albedo",))
        v = plan.truth.albedo_value
        for p in plan.pairing("albedo").pairs:
            assert v[p.a[0].split("__")[0]] > v[p.b[0].split("__")[0]]
        d = plan.describe()
        assert d["orientation"]["albedo"]["order"] == order and order in d["contrasts"]["albedo"]["orientation"]
        assert "never from unit values" in d["orientation"]["computed_from"]


def test_scene_difference_is_mean_of_sample_differences(render):
    scenes, samples = build_image_plan(render), build_image_plan(render, pairs_over="samples")
    values = _values(scenes)
    assert [s.key for s in scenes.images] == [s.key for s in samples.images]
    for name in CONTRASTS:
        a, b = scenes.arrays(name, values)
        sa, sb = samples.arrays(name, values)
        c = samples.pairing(name)
        assert c.pairs_over == "samples" and "CLUSTERED" in c.definition and c.clustered
        per_scene = np.stack([(sa - sb)[[p.cluster == s for p in c.pairs]].mean(0) for s in SCENES])
        np.testing.assert_allclose(a - b, per_scene, rtol=1e-5, atol=1e-6)
    n = {name: len(samples.pairing(name).pairs) for name in CONTRASTS}
    # 27 samples; lighting: 3 scenes x 3 versions x 2 other lightings; albedo: 3 scenes x 3 lightings x 2 variants
    assert n == {"render_vs_albedo": 27, "lighting": 18, "albedo": 18, "luminance": 18}   # fake variants: hsv
    p = samples.pairing("lighting").pairs[0]
    assert p.id == "alpha__key vs alpha__rim" and p.a == ("alpha__key/render",) and p.b == ("alpha__rim/render",)
    assert samples.describe()["clustered"] and not scenes.describe()["clustered"]


def test_per_sample_render_vs_albedo_follows_c3(render):
    plan = build_image_plan(render)
    values = _values(plan)
    per = plan.per_sample_render_vs_albedo(values)
    assert per["diff"].shape == (27, 5) and per["diff"].dtype == np.float32
    assert str(per["contrast"]) == "render_vs_albedo"
    i = list(per["sample_ids"]).index("gamma~c1__top")
    assert per["scene_ids"][i] == "gamma"
    np.testing.assert_allclose(per["diff"][i], _f(plan, values, "gamma~c1__top/render")
                               - _f(plan, values, "gamma~c1__top/albedo"), rtol=1e-6)
    with pytest.raises(ValueError, match="one per image"):
        plan.arrays("lighting", values[:-1])
    d = plan.describe()
    json.dumps(d)
    assert d["contrasts"]["albedo"]["n_pairs"] == 3 and d["contrasts"]["albedo"]["n_sample_pairs"] == 18


def test_design_makes_stimuli_and_captures_that_reproduce(render, tmp_path):
    """One Stimulus per image and noise draw: pair id = base scene, the scene's seeds for every image of it,
    identical images (a version's albedo under every lighting) one computation; assemble averages the
    draws; captures.npz keeps every contrast and the per-image values, and analyse_captures reads it back."""
    plan = build_image_plan(render)
    design = ImageDesign(plan, "make it flat", seed=3, seeds_per_pair=2)
    stim = design.stimuli()
    assert len(stim) == 2 * len(plan.images) and design.pair_ids == SCENES
    assert {s.pair_id for s in stim} == set(SCENES)
    for scene in SCENES:
        seeds = {(s.draw, s.seed) for s in stim if s.pair_id == scene}
        assert seeds == set(enumerate(design.seeds(scene)))
    assert design.seeds("alpha") != design.seeds("beta")
    s0 = stim[0]
    assert s0.role == "render:alpha__key" and s0.image.endswith("alpha__key/image_srgb.png") and s0.prompt == "make it flat"
    # albedo_srgb.png of one version is identical under every lighting: same key, captured once
    keys = {s.key() for s in stim}
    assert len(keys) == 2 * (27 + 9)
    rng = np.random.default_rng(1)
    values = {k: rng.normal(size=4).astype(np.float32) for k in keys}
    arrays = design.assemble(values)
    iv = arrays["images"]
    img = plan.images[5]
    np.testing.assert_allclose(iv[5], np.mean([values[design._stimulus(img, s, k).key()]
                                              for k, s in enumerate(design.seeds(img.base_scene))], 0), rtol=1e-6)
    units = [f"s00/double.0.img/h{i:02d}" for i in range(4)]
    caps = design.captures(values, units, {"protocol": "heads", "direction": "a-b"})
    save_captures(tmp_path / "c.npz", caps)
    back = load_captures(tmp_path / "c.npz")
    assert back.stimuli == "images" and list(back.contrast_sets()) == list(CONTRASTS)
    z = np.load(tmp_path / "c.npz")
    assert list(z["contrast_names"]) == list(CONTRASTS) and "contrast_lighting_a" in z.files
    np.testing.assert_array_equal(z["a"], arrays["contrasts"]["render_vs_albedo"][0])
    np.testing.assert_array_equal(z["image_values"], iv)
    assert back.meta["image_design"]["orientation"]["lighting"]["criterion"].startswith("shading contrast")
    cfg = StatsConfig(n_perm=200, n_boot=0, n_splits=0)
    res = analyse_captures(back, cfg)
    assert res.primary == "render_vs_albedo" and res.classification is not None
    table = res.units_table()
    for col in ("t_render_vs_albedo", "d_lighting", "p_fwer_albedo", "class", "p_equiv_lighting"):
        assert col in table, col
    np.testing.assert_allclose(table["t"], table["t_render_vs_albedo"])
    assert table["direction"][0] == "render - albedo"
    assert design.record()["scene_seeds"]["beta"] == design.seeds("beta")


def test_subset_of_contrasts_needs_only_its_images(tmp_path):
    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta"), lightings=("key",),
                                           variants=1, albedo_srgb=False, h=16, w=16)
    plan = build_image_plan(root, contrasts=("albedo",))
    assert [c.name for c in plan.pairings] == ["albedo"] and all(s.kind == "render" for s in plan.images)
    with pytest.raises(KeyError, match="render_vs_albedo"):
        plan.per_sample_render_vs_albedo(np.zeros((len(plan.images), 2)))


@pytest.mark.parametrize("kwargs,names,flag", [
    (dict(albedo_srgb=False), ["render_vs_albedo"], "albedo_srgb.png"),
    (dict(variants=0), ["albedo"], "--recolor K"),
    (dict(lightings=("key",)), ["lighting"], "--lightings"),
    (dict(variants=0, lightings=("key",), albedo_srgb=False), ["render_vs_albedo", "lighting", "albedo"], "--recolor K"),
])
def test_missing_data_names_contrast_and_render_flag(tmp_path, kwargs, names, flag):
    args = dict(scenes=("alpha", "beta"), lightings=("key", "rim"), variants=1, h=16, w=16) | kwargs
    root = write_synthetic_render_variants(tmp_path / "r", **args)
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(StimuliError) as e:
        build_image_plan(root)
    msg = str(e.value)
    assert "\n" not in msg and flag in msg and "Nothing was written" in msg
    for n in names:
        assert f"`{n}` contrast needs" in msg
    for n in set(CONTRASTS) - set(names):
        assert f"`{n}` contrast needs" not in msg
    assert sorted(p.name for p in root.iterdir()) == before


def test_manifest_from_before_variants_reads_as_originals(tmp_path):
    """No `variant` / `base_scene` keys (a render made before --recolor): variant 0, base scene = scene."""
    root = write_synthetic_render_variants(tmp_path / "r", lightings=("key", "rim"), variants=0,
                                           legacy_manifest=True, h=16, w=16)
    plan = build_image_plan(root, contrasts=("render_vs_albedo", "lighting"))
    assert {(s.variant, s.base_scene == s.scene) for s in plan.samples} == {(0, True)}
    assert [p.id for p in plan.pairing("lighting").pairs] == ["alpha", "beta"]


def test_partial_scenes_are_left_out_and_said(tmp_path):
    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta"), lightings=("key", "rim"),
                                           variants=1, h=16, w=16)
    m = json.loads((root / "manifest.json").read_text())
    m["samples"] = [e for e in m["samples"] if not (e["base_scene"] == "beta" and e["variant"] == 1)]
    (root / "manifest.json").write_text(json.dumps(m))
    c = build_image_plan(root).pairing("albedo")
    assert [p.id for p in c.pairs] == ["alpha"] and c.left_out and "beta" in c.left_out[0] and "beta" in c.definition


def test_bad_folder_and_options(tmp_path):
    with pytest.raises(StimuliError, match="render folder not found"):
        build_image_plan(tmp_path / "nope")
    root = write_synthetic_render_variants(tmp_path / "r", h=16, w=16)
    with pytest.raises(StimuliError, match="pairs_over"):
        build_image_plan(root, pairs_over="pixels")
    with pytest.raises(StimuliError, match="unknown contrast"):
        build_image_plan(root, contrasts=("shading",))
    with pytest.raises(StimuliError, match="albedo_order"):
        build_image_plan(root, albedo_order="hue")
    (root / "beta__key" / "shading_linear.exr").unlink()
    with pytest.raises(StimuliError, match="`lighting` contrast: its A/B order is set by the shading"):
        build_image_plan(root)
    (root / "alpha__key" / "image_srgb.png").unlink()
    with pytest.raises(StimuliError, match="incomplete"):
        build_image_plan(root)


def test_module_is_pure_data(render):
    """Building the plan and the design imports neither torch nor diffusers (statistics and --help stay light)."""
    import subprocess
    import sys

    code = ("import sys; from probe.design.image_stimuli import ImageDesign, build_image_plan; "
            f"ImageDesign(build_image_plan({str(render)!r}), 'x').stimuli(); "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'bpy') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ planted units under the orientation

N_SCENES = 12


@pytest.fixture(scope="module")
def oriented(tmp_path_factory):
    """12 scenes x 2 lightings x (original + 1 variant), tiny images; which lighting is the harder one is
    drawn at random per scene, so lighting names carry no information about it."""
    scenes = tuple(f"s{i:02d}" for i in range(N_SCENES))
    root = write_synthetic_render_variants(tmp_path_factory.mktemp("oriented"), scenes=scenes,
                                           lightings=("key", "rim"), variants=1, h=8, w=8, seed=5)
    rng = np.random.default_rng(7)
    gamma = {}
    for s in scenes:
        hard, soft = rng.uniform(1.5, 3.0), rng.uniform(0.3, 1.2)
        first_hard = rng.random() < 0.5
        gamma[(s, "key")], gamma[(s, "rim")] = (hard, soft) if first_hard else (soft, hard)
    _set_shading_contrast(root, gamma)
    return build_image_plan(root)


def _image_matrix(plan, rng, planted_light=0.0, planted_albedo=0.0, n_null=20):
    """[images, 2 + n_null]: unit 0 tracks the shading contrast, unit 1 the albedo luminance; the rest are null
    units with scene effects and lighting- and colour-specific effects unrelated to the ground truth."""
    scene_fx = {s: rng.normal(size=2 + n_null) for s in plan.scenes}
    light_fx = {(s, l): rng.normal(size=2 + n_null) for s in plan.scenes for l in ("key", "rim")}
    colour_fx = {(s, v): rng.normal(size=2 + n_null) for s in plan.scenes for v in (0, 1)}
    rows = []
    for img in plan.images:
        x = scene_fx[img.base_scene] + 0.7 * light_fx[(img.base_scene, img.lighting)] \
            + 0.7 * colour_fx[(img.base_scene, img.variant)] + 0.3 * rng.normal(size=2 + n_null)
        scene = img.base_scene if img.variant == 0 else f"{img.base_scene}~c{img.variant}"
        x[0] += planted_light * plan.truth.shading_contrast[img.base_scene][img.lighting]
        x[1] += planted_albedo * plan.truth.albedo_value[scene]
        rows.append(x)
    return np.array(rows, dtype=np.float32)


def _analyse(plan, m, n_perm=2048):
    sets = {c.name: (*plan.arrays(c.name, m), [p.id for p in c.pairs]) for c in plan.pairings}
    return analyse_images(sets, [f"u{i}" for i in range(m.shape[1])],
                          config=StatsConfig(n_perm=n_perm, n_boot=0, n_splits=0, threads=1))


def test_planted_units_tracking_the_ground_truth_are_found(oriented):
    """(a) a unit that grows with the shading contrast is found by the lighting contrast, one that grows with
    the albedo luminance by the albedo contrast; the same lighting unit ordered by lighting name is not."""
    plan = oriented
    rng = np.random.default_rng(11)
    m = _image_matrix(plan, rng, planted_light=10.0, planted_albedo=12.0)
    res = _analyse(plan, m)
    assert res.stats["lighting"].null.significant[0] and res.stats["lighting"].unit.t[0] > 0
    assert res.stats["albedo"].null.significant[1] and res.stats["albedo"].unit.t[1] > 0
    # by name ("key" minus "rim" in every scene) the planted unit's differences change sign from scene to scene
    by_name = []
    for s in plan.scenes:
        k = [i for i, img in enumerate(plan.images) if img.base_scene == s and img.kind == "render"]
        key = np.mean([m[i, 0] for i in k if plan.images[i].lighting == "key"])
        rim = np.mean([m[i, 0] for i in k if plan.images[i].lighting == "rim"])
        by_name.append(key - rim)
    by_name = np.array(by_name)
    t_name = by_name.mean() / (by_name.std(ddof=1) / np.sqrt(by_name.size))
    assert abs(t_name) < 0.5 * res.stats["lighting"].unit.t[0]
    assert 0 < np.mean(by_name > 0) < 1


def test_planted_null_keeps_the_fwer(oriented):
    """(b) null units (scene, lighting and colour effects unrelated to the ground truth): over 150 simulated
    experiments, the share with any FWER-significant null unit stays at alpha for both oriented contrasts."""
    plan = oriented
    rng = np.random.default_rng(3)
    hits = {"lighting": 0, "albedo": 0}
    n_sim = 150
    for _ in range(n_sim):
        res = _analyse(plan, _image_matrix(plan, rng, n_null=20)[:, 2:], n_perm=1024)
        for name in hits:
            hits[name] += bool(res.stats[name].null.significant.any())
    se = np.sqrt(0.05 * 0.95 / n_sim)
    for name, h in hits.items():
        assert h / n_sim <= 0.05 + 3 * se, (name, h)


# ------------------------------------------------------------------ chroma variants (issue 17, point 7)

def _albedo_detector_run(root, n_units=40, seed=0):
    """Analyse an image plan whose unit 0 follows the mean albedo luminance of each image's scene version (a pure
    brightness detector) and unit 1 its albedo chroma; the rest are noise. Values come from the ground truth on
    disk, never from the design's orientation."""
    from render.dataset import load_manifest, load_sample

    plan = build_image_plan(root)
    m = load_manifest(root)
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=0.02, size=(len(plan.images), n_units))
    for i, img in enumerate(plan.images):
        s = load_sample(root, img.sample_id, m)
        alb = s.albedo_linear.astype(np.float64)[s.mask]
        values[i, 0] += (alb @ np.array([0.2126, 0.7152, 0.0722])).mean()
        values[i, 1] += (alb.max(1) - alb.min(1)).mean()
    design = ImageDesign(plan, "make it albedo")
    vals = {st.key(): values[[im.key for im in plan.images].index(st.role.split(":", 1)[1] + "/" +
                                                                   st.role.split(":", 1)[0])].astype(np.float32)
            for st in design.stimuli()}
    caps = design.captures(vals, np.array([f"s00/double.0.img/h{u:02d}" for u in range(n_units)]), {})
    return plan, analyse_captures(caps, StatsConfig(n_perm=500, n_splits=4, n_boot=20, seed=0))


def test_a_brightness_detector_is_albedo_selective_with_hsv_variants_but_not_with_chroma_variants(tmp_path):
    from probe.stats.luminance import luminance_row

    scenes = tuple(f"s{i:02d}" for i in range(24))
    hsv = write_synthetic_render_variants(tmp_path / "hsv", scenes=scenes, lightings=("key", "rim"), variants=1,
                                          h=8, w=8)
    both = write_synthetic_render_variants(tmp_path / "both", scenes=scenes, lightings=("key", "rim"), variants=1,
                                           chroma_variants=1, h=8, w=8)
    plan_h, res_h = _albedo_detector_run(hsv)
    assert res_h.classification.classes[0] == "albedo-selective"       # brightness passes as albedo (the old design)
    plan_b, res_b = _albedo_detector_run(both)
    truth = plan_b.truth.record()
    assert truth["albedo"]["variants"] == "chroma" and truth["albedo"]["order"] == "chroma"
    assert truth["luminance"]["variants"] == "hsv" and "variant_rule" in truth["albedo"]
    alb, lum = plan_b.pairing("albedo"), plan_b.pairing("luminance")
    assert all("~c2" in k for p in alb.pairs for k in (*p.a, *p.b) if "~c" in k)          # chroma variants only
    assert all("~c1" in k for p in lum.pairs for k in (*p.a, *p.b) if "~c" in k)          # hsv variants only
    cls = res_b.classification.classes
    assert cls[0] != "albedo-selective" and not res_b.stats["albedo"].null.significant[0]
    assert res_b.stats["albedo"].null.significant[1]                     # colourfulness still shows
    row = luminance_row(res_b)
    assert row["n_follow_luminance"] >= 1 and res_b.stats["luminance"].null.significant[0]
    assert row["by_class"][cls[0]] >= 1
    assert "t_luminance" in res_b.units_table() and "luminance" in res_b.summary()["contrasts"]
    # a captures.npz without its sample pairs rebuilds them from the record, chroma and hsv variants apart
    from probe.design.image_stimuli import sample_pairs_from_record

    stored = plan_b.sample_pairs()
    rebuilt = sample_pairs_from_record([i.key for i in plan_b.images], [i.base_scene for i in plan_b.images],
                                       plan_b.describe())
    assert set(rebuilt) == set(stored) == {"render_vs_albedo", "lighting", "albedo", "luminance"}
    for name, (a, b) in stored.items():
        np.testing.assert_array_equal(rebuilt[name][0], a)
        np.testing.assert_array_equal(rebuilt[name][1], b)


def test_luminance_contrast_is_optional_by_default_and_explained_when_asked_for(tmp_path):
    root = write_synthetic_render_variants(tmp_path / "r", scenes=("a", "b"), lightings=("key", "rim"), variants=0,
                                           chroma_variants=1, h=8, w=8)
    plan = build_image_plan(root)           # chroma variants only: no luminance contrast, no error
    assert [c.name for c in plan.pairings] == ["render_vs_albedo", "lighting", "albedo"]
    with pytest.raises(StimuliError, match="`luminance` contrast needs luminance-changing.*--recolor-mode both"):
        build_image_plan(root, contrasts=["luminance"])
