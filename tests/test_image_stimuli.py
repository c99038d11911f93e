"""probe.image_stimuli on fake render folders (no torch, no model): the three contrasts, averaging, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probe.image_stimuli import CONTRASTS, StimuliError, build_image_stimuli
from tests.fakes import write_synthetic_render_variants

SCENES, LIGHTS = ("alpha", "beta", "gamma"), ("key", "rim", "top")


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    """3 base scenes x (original + 2 variants) x 3 lightings = 27 samples at 16 x 16."""
    return write_synthetic_render_variants(tmp_path_factory.mktemp("render"), scenes=SCENES, lightings=LIGHTS,
                                           variants=2, h=16, w=16)


def _values(st, n_units=5, seed=0):
    return np.random.default_rng(seed).normal(size=(len(st.stimuli), n_units)).astype(np.float32)


def _f(st, values, key):
    return values[[s.key for s in st.stimuli].index(key)].astype(np.float64)


def test_stimuli_cover_every_sample_once(render):
    st = build_image_stimuli(render)
    assert len(st.samples) == 27 and len(st.stimuli) == 54
    assert [s.key for s in st.stimuli][:2] == ["alpha__key/render", "alpha__key/albedo"]
    assert len({s.key for s in st.stimuli}) == 54
    by_kind = {s.kind: s.path.name for s in st.stimuli}
    assert by_kind == {"render": "image_srgb.png", "albedo": "albedo_srgb.png"}
    assert all(s.path.is_file() for s in st.stimuli)
    v = next(s for s in st.samples if s.id == "beta~c2__rim")
    assert (v.scene, v.base_scene, v.variant, v.lighting) == ("beta~c2", "beta", 2, "rim")
    assert [c.name for c in st.contrasts] == list(CONTRASTS)
    for c in st.contrasts:  # pairs over base scenes by default, one per scene
        assert c.pairs_over == "scenes" and [p.id for p in c.pairs] == list(SCENES) == c.clusters
        assert "One pair per base scene" in c.definition


def test_scene_pairs_average_exactly_the_stated_samples(render):
    st = build_image_stimuli(render)
    values = _values(st)
    f = lambda key: _f(st, values, key)  # noqa: E731
    versions, others = ("beta", "beta~c1", "beta~c2"), ("rim", "top")
    i = SCENES.index("beta")

    a, b = st.arrays("render_vs_albedo", values)
    ids = [f"{v}__{l}" for v in versions for l in LIGHTS]
    np.testing.assert_allclose(a[i], np.mean([f(f"{s}/render") for s in ids], 0), rtol=1e-6)
    np.testing.assert_allclose(b[i], np.mean([f(f"{s}/albedo") for s in ids], 0), rtol=1e-6)

    a, b = st.arrays("lighting", values)   # A: each version under "key" (first by name), B: under rim and top
    np.testing.assert_allclose(a[i], np.mean([f(f"{v}__key/render") for v in versions], 0), rtol=1e-6)
    np.testing.assert_allclose(b[i], np.mean([f(f"{v}__{l}/render") for v in versions for l in others], 0), rtol=1e-6)

    a, b = st.arrays("albedo", values)     # A: original under each lighting, B: each variant under the same lighting
    np.testing.assert_allclose(a[i], np.mean([f(f"beta__{l}/render") for l in LIGHTS], 0), rtol=1e-6)
    np.testing.assert_allclose(b[i], np.mean([f(f"beta~c{k}__{l}/render") for k in (1, 2) for l in LIGHTS], 0),
                               rtol=1e-6)
    assert a.shape == b.shape == (3, values.shape[1]) and a.dtype == np.float32


def test_scene_difference_is_mean_of_sample_differences(render):
    scenes, samples = build_image_stimuli(render), build_image_stimuli(render, pairs_over="samples")
    values = _values(scenes)
    assert [s.key for s in scenes.stimuli] == [s.key for s in samples.stimuli]
    for name in CONTRASTS:
        a, b = scenes.arrays(name, values)
        sa, sb = samples.arrays(name, values)
        c = samples.contrast(name)
        assert c.pairs_over == "samples" and "CLUSTERED" in c.definition
        per_scene = np.stack([(sa - sb)[[p.cluster == s for p in c.pairs]].mean(0) for s in SCENES])
        np.testing.assert_allclose(a - b, per_scene, rtol=1e-5, atol=1e-6)
    n = {name: len(samples.contrast(name).pairs) for name in CONTRASTS}
    # 27 samples; lighting: 3 scenes x 3 versions x 2 other lightings; albedo: 3 scenes x 3 lightings x 2 variants
    assert n == {"render_vs_albedo": 27, "lighting": 18, "albedo": 18}
    p = samples.contrast("lighting").pairs[0]
    assert p.id == "alpha__key vs alpha__rim" and p.a == ("alpha__key/render",) and p.b == ("alpha__rim/render",)
    p = samples.contrast("albedo").pairs[0]
    assert p.a == ("alpha__key/render",) and p.b == ("alpha~c1__key/render",)


def test_per_sample_render_vs_albedo_follows_c3(render):
    st = build_image_stimuli(render)
    values = _values(st)
    per = st.per_sample_render_vs_albedo(values)
    assert per["diff"].shape == (27, 5) and per["diff"].dtype == np.float32
    assert str(per["contrast"]) == "render_vs_albedo"
    i = list(per["sample_ids"]).index("gamma~c1__top")
    assert per["scene_ids"][i] == "gamma"
    np.testing.assert_allclose(per["diff"][i], _f(st, values, "gamma~c1__top/render")
                               - _f(st, values, "gamma~c1__top/albedo"), rtol=1e-6)
    with pytest.raises(ValueError, match="one per stimulus"):
        st.arrays("lighting", values[:-1])
    d = st.describe()
    json.dumps(d)
    assert d["contrasts"]["albedo"]["n_pairs"] == 3 and d["contrasts"]["albedo"]["n_sample_pairs"] == 18


def test_subset_of_contrasts_needs_only_its_images(tmp_path):
    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta"), lightings=("key",),
                                           variants=1, albedo_srgb=False, h=16, w=16)
    st = build_image_stimuli(root, contrasts=("albedo",))
    assert [c.name for c in st.contrasts] == ["albedo"] and all(s.kind == "render" for s in st.stimuli)
    with pytest.raises(KeyError, match="render_vs_albedo"):
        st.per_sample_render_vs_albedo(np.zeros((len(st.stimuli), 2)))


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
        build_image_stimuli(root)
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
    st = build_image_stimuli(root, contrasts=("render_vs_albedo", "lighting"))
    assert {(s.variant, s.base_scene == s.scene) for s in st.samples} == {(0, True)}
    assert [p.id for p in st.contrast("lighting").pairs] == ["alpha", "beta"]


def test_partial_scenes_are_left_out_and_said(tmp_path):
    root = write_synthetic_render_variants(tmp_path / "r", scenes=("alpha", "beta"), lightings=("key", "rim"),
                                           variants=1, h=16, w=16)
    m = json.loads((root / "manifest.json").read_text())
    m["samples"] = [e for e in m["samples"] if not (e["base_scene"] == "beta" and e["variant"] == 1)]
    (root / "manifest.json").write_text(json.dumps(m))
    c = build_image_stimuli(root).contrast("albedo")
    assert [p.id for p in c.pairs] == ["alpha"] and c.left_out and "beta" in c.left_out[0] and "beta" in c.definition


def test_bad_folder_and_options(tmp_path):
    with pytest.raises(StimuliError, match="render folder not found"):
        build_image_stimuli(tmp_path / "nope")
    root = write_synthetic_render_variants(tmp_path / "r", h=16, w=16)
    with pytest.raises(StimuliError, match="pairs_over"):
        build_image_stimuli(root, pairs_over="pixels")
    with pytest.raises(StimuliError, match="unknown contrast"):
        build_image_stimuli(root, contrasts=("shading",))
    (root / "alpha__key" / "image_srgb.png").unlink()
    with pytest.raises(StimuliError, match="incomplete"):
        build_image_stimuli(root)


def test_module_is_pure_data(render):
    """Building stimuli imports neither torch nor diffusers (statistics and --help stay light)."""
    import subprocess
    import sys

    code = ("import sys; from probe.image_stimuli import build_image_stimuli; "
            f"build_image_stimuli({str(render)!r}); "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'bpy') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
