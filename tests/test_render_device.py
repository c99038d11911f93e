"""`python -m render --device`: the Cycles backend is chosen, recorded, and a missing one is a clean error.

The other render tests run with the default `--device auto`, i.e. on whatever device this machine has,
so the identity and AOV tests cover a GPU wherever one is present. Here: the paths that need no GPU.
"""
from __future__ import annotations

import json

import pytest

from render.dataset import load_manifest
from render.settings import DEVICES, RenderSettings
from test_render import run_cli, run_py

TINY = ["--resolution", "24", "--samples", "2"]


@pytest.fixture(scope="module")
def gpu_backends() -> dict[str, list[str]]:
    """What this machine's Cycles reports, per GPU backend (asked in a subprocess: bpy stays out of pytest)."""
    code = ("import json; from render.blender import gpu_devices; "
            "print(json.dumps({b: gpu_devices(b.upper())[0] for b in ('cuda', 'optix', 'hip')}))")
    return json.loads(run_py(code).strip().splitlines()[-1])


def test_device_setting_is_validated_and_not_a_pixel_setting():
    assert DEVICES == ("auto", "cpu", "cuda", "optix", "hip")
    with pytest.raises(ValueError, match="device"):
        RenderSettings(device="metal").validate()
    assert RenderSettings(device="cpu").matches(RenderSettings(device="optix"))
    assert "device" not in RenderSettings().pixel_dict()


@pytest.mark.parametrize("backend", ["cuda", "optix", "hip"])
def test_unavailable_gpu_backend_is_a_one_paragraph_error(backend, gpu_backends, tmp_path):
    if gpu_backends[backend]:
        pytest.skip(f"this machine has a {backend} device: {gpu_backends[backend]}")
    out = tmp_path / "out"
    proc = run_cli("--only", "red_cube_table", *TINY, "--device", backend, "--out", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    msg = proc.stderr.strip()
    assert msg.startswith(f"python -m render: error: --device {backend}:") and "\n" not in msg
    assert "nothing was rendered" in msg and "--device cpu" in msg and "Traceback" not in msg
    assert "WARNING" not in proc.stdout                      # Cycles' driver warnings are folded into the message
    assert not out.exists()                                  # nothing written, not even the folder


def test_auto_falls_back_to_cpu_once_and_records_the_device(gpu_backends, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--only", "red_cube_table,checker_cube", *TINY, "--lightings", "sun_left,area_right",
                   "--out", str(out))
    m = load_manifest(out)
    assert m["num_samples"] == 2 and m["device"]["requested"] == "auto"
    assert all(e["device"] == m["device"] for e in m["samples"])
    if any(gpu_backends.values()):
        assert m["device"]["backend"] in ("OPTIX", "CUDA", "HIP") and "rendering on the CPU" not in proc.stderr
    else:
        assert m["device"]["backend"] == "CPU" and m["device"]["devices"]
        assert proc.stderr.count("--device auto: Cycles reports no GPU device") == 1   # said once, two scenes
        assert "WARNING" not in proc.stdout + proc.stderr


def test_explicit_cpu_renders_on_cpu_and_resumes_across_devices(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--only", "red_cube_table", *TINY, "--lightings", "sun_left", "--device", "cpu", "--out", str(out))
    assert "no GPU device" not in proc.stderr
    m = load_manifest(out)
    assert m["device"] == {"requested": "cpu", "backend": "CPU", "devices": m["device"]["devices"]}
    # the device does not change what a sample is: another device resumes the same folder
    proc = run_cli("--only", "red_cube_table", *TINY, "--lightings", "sun_left", "--out", str(out))
    assert "rendered 0, skipped 1" in proc.stderr
