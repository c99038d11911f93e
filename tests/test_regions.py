"""probe.klein.regions: token regions and unit-group names, checked against each other and the sequence layout."""
import pytest

from probe.klein.regions import REGIONS, TokenLayout, group_name, group_site_region, site_kind


@pytest.mark.parametrize("group,site,region", [
    ("double.3.img", "double.3.img", "img"), ("double.3.ref", "double.3.img", "ref"),
    ("double.3.txt", "double.3.txt", "txt"), ("single.9", "single.9", "img"), ("single.9.img", "single.9", "img"),
    ("single.9.txt", "single.9", "txt"), ("single.9.ref", "single.9", "ref")])
def test_group_site_region_round_trip(group, site, region):
    assert group_site_region(group) == (site, region)
    assert group_site_region(group_name(site, region)) == (site, region)


@pytest.mark.parametrize("bad", ["double.3", "double.x.img", "single", "single.9.mlp", "double.3.img/h07", ""])
def test_bad_groups_raise(bad):
    with pytest.raises(ValueError):
        group_site_region(bad)


def test_site_regions():
    assert site_kind("double.0.txt") == "double_txt"
    with pytest.raises(ValueError):
        group_name("double.0.txt", "ref")       # the text stream has no reference tokens
    with pytest.raises(ValueError):
        group_name("double.0.img", "txt")


def test_spans_tile_each_sequence():
    lay = TokenLayout(txt_len=512, n_img=256, n_ref=300)
    single = [lay.span("single", r) for r in ("txt", "img", "ref")]
    assert [(s.start, s.stop) for s in single] == [(0, 512), (512, 768), (768, 1068)]
    assert single[-1].stop == lay.seq_len("single")
    img = [lay.span("double_img", r) for r in ("img", "ref")]
    assert [(s.start, s.stop) for s in img] == [(0, 256), (256, 556)] and img[-1].stop == lay.seq_len("double_img")
    assert lay.span("double_txt", "txt") == slice(0, 512)
    assert TokenLayout(512, 16).span("single", "ref") == slice(528, 528)   # no reference: empty
    with pytest.raises(RuntimeError, match="predicts"):
        lay.check("single", 1000)
    assert set(REGIONS) == {"img", "txt", "ref"}
