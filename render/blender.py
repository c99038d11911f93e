"""The only module that imports bpy: builds a `Scene` in Blender and renders its Cycles passes.

    from render.blender import BlenderSession
    session = BlenderSession(settings, tmp_dir)       # one per process: Blender starts once; settings.device
                                                      # picks the Cycles backend (resolve_device)
    session.build(scene)                              # geometry, materials (+ base-colour AOV), camera
    for lighting in scene.lightings:
        session.set_lighting(scene, lighting)         # lights and world only; geometry untouched
        passes = session.render()                     # {"Combined": [H,W,4], "albedo": [H,W,4], ...} float32

Passes come back through one uncompressed multilayer EXR per render (read with OpenEXR): no
compositor, which Blender 5 has moved (`scene.compositing_node_group`) and which would only copy data.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import mathutils
import numpy as np

from render.scene import Light, Lighting, Material, Object, Scene, Texture, World
from render.settings import GPU_PREFERENCE, RenderSettings

ALBEDO_AOV = "albedo"
NORMAL_AOV = "normal"   # the Geometry node's shading normal: unlike Cycles' Normal pass (an average of the BSDF
                        # closures' normals weighted by their colours), it cannot depend on material colours
VIEW_LAYER = "ViewLayer"

# No transmission passes: the spec schema has no transmissive materials, so they would be all zeros
# (and cost time). The identity check in groundtruth.py flags any light missing from the sum.
_GT_PASSES = (
    "use_pass_z", "use_pass_object_index",
    "use_pass_diffuse_color", "use_pass_diffuse_direct", "use_pass_diffuse_indirect",
    "use_pass_glossy_color", "use_pass_glossy_direct", "use_pass_glossy_indirect",
    "use_pass_emit", "use_pass_environment",
)
# Blender's file names for passes -> the names Python users see in the UI (and groundtruth.py uses)
_PASS_ALIASES = {"Depth": "Depth", "Object Index": "Object Index", "IndexOB": "Object Index"}


def blender_version() -> str:
    return f"{bpy.app.version_string} ({bpy.app.build_hash.decode() if isinstance(bpy.app.build_hash, bytes) else bpy.app.build_hash})"


def working_space() -> str:
    try:
        return str(bpy.data.colorspace.working_space)
    except AttributeError:  # older Blender: scene linear is Linear Rec.709 unless the OCIO config says otherwise
        return "Linear Rec.709"


@contextlib.contextmanager
def _quiet_stdout(enabled: bool = True):
    """Cycles prints progress with C printf; send fd 1 to /dev/null so the progress bar stays readable."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class DeviceError(RuntimeError):
    """An explicitly requested Cycles backend has no usable device here; the message is for the user as is."""


@dataclass(frozen=True)
class Device:
    """The Cycles device a session renders on, as resolved from `--device`."""
    requested: str                  # auto | cpu | cuda | optix | hip
    backend: str                    # CPU | CUDA | OPTIX | HIP
    devices: tuple[str, ...]        # device names Cycles uses
    note: str = ""                  # why auto chose what it chose

    def record(self) -> dict:
        return {"requested": self.requested, "backend": self.backend, "devices": list(self.devices)}


@contextlib.contextmanager
def _capture_output():
    """Collect what C code writes to fd 1 and 2 (Cycles logs its device warnings to stdout) instead of showing it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        lines: list[str] = []
        try:
            yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in saved.items():
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                line = line.split("| ", 1)[-1].strip()   # drop Cycles' "00:00.188  cycles  |" prefix
                if line:
                    lines.append(line)


def _cycles_prefs():
    return bpy.context.preferences.addons["cycles"].preferences


def gpu_devices(backend: str) -> tuple[list[str], list[str]]:
    """(names of the devices Cycles can use for `backend` ("CUDA", "OPTIX", "HIP"), Cycles' messages)."""
    prefs = _cycles_prefs()
    with _capture_output() as log:
        try:
            prefs.compute_device_type = backend
            prefs.refresh_devices()
            found = [d.name for d in prefs.get_devices_for_type(backend) if d.type == backend]
        except (TypeError, ValueError, AttributeError, RuntimeError) as e:   # backend not built into this bpy
            found, err = [], str(e)
        else:
            err = ""
    return found, [*log, *([err] if err else [])]


_NAMES = {"cuda": "CUDA", "optix": "OptiX", "hip": "HIP"}
_LOG_KEYS = {"cuda": ("CUDA", "CUEW"), "optix": ("CUDA", "CUEW", "OPTIX"), "hip": ("HIP",)}


def resolve_device(requested: str) -> Device:
    """Pick the Cycles backend for `--device`: DeviceError if an explicit GPU backend has no device."""
    requested = requested.lower()
    if requested == "cpu":
        return Device("cpu", "CPU", _cpu_names())
    tried: list[str] = []
    log: list[str] = []
    for name in (GPU_PREFERENCE if requested == "auto" else (requested,)):
        backend = name.upper()
        found, msgs = gpu_devices(backend)
        if found:
            return Device(requested, backend, tuple(found))
        tried.append(backend)
        log.extend(msgs)
    if requested == "auto":
        return Device("auto", "CPU", _cpu_names(),
                      note=f"--device auto: Cycles reports no GPU device ({', '.join(tried)}: none), so rendering "
                           f"on the CPU")
    keys = _LOG_KEYS.get(requested, ())
    log = [line for line in dict.fromkeys(log) if any(k in line.upper() for k in keys)]
    said = f" Cycles said: {'; '.join(log)}." if log else ""
    raise DeviceError(
        f"--device {requested}: Blender {bpy.app.version_string}'s Cycles reports no {_NAMES[requested]} device on "
        f"this machine, so nothing was rendered.{said} Check that the GPU driver (and for OptiX, a driver with "
        f"OptiX support; for HIP, the ROCm runtime) is installed and visible to this process (nvidia-smi / "
        f"rocm-smi, CUDA_VISIBLE_DEVICES), or use --device auto (the best available backend, else the CPU) "
        f"or --device cpu.")


def _cpu_names() -> tuple[str, ...]:
    try:
        import _cycles

        names = tuple(d[0] for d in _cycles.available_devices("CPU") if d[1] == "CPU")
    except Exception:  # noqa: BLE001 - the name is informational only
        names = ()
    return names or ("CPU",)


def _look_rotation(location, target) -> mathutils.Euler:
    d = mathutils.Vector(target) - mathutils.Vector(location)
    return d.to_track_quat("-Z", "Y").to_euler()


class BlenderSession:
    """Holds one Blender instance; `build` resets it to factory settings for each scene."""

    def __init__(self, settings: RenderSettings, tmp_dir: str | os.PathLike, quiet: bool = True,
                 device: Device | None = None):
        self.settings = settings.validate()
        self.device = device or resolve_device(self.settings.device)
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.quiet = quiet
        self.scene_id: str | None = None
        self._lights: list = []

    # ------------------------------------------------------------------------------------ scene
    def build(self, scene: Scene) -> None:
        with _quiet_stdout(self.quiet):
            bpy.ops.wm.read_factory_settings(use_empty=True)
        bsc = bpy.context.scene
        self._configure(bsc)
        cam_data = bpy.data.cameras.new("camera")
        cam_data.lens = scene.camera.lens_mm
        cam_data.sensor_width = scene.camera.sensor_mm
        cam_data.sensor_fit = "AUTO"
        cam_data.clip_start = 0.01
        cam_data.clip_end = 10000.0
        cam = bpy.data.objects.new("camera", cam_data)
        bsc.collection.objects.link(cam)
        cam.location = scene.camera.location
        cam.rotation_euler = _look_rotation(scene.camera.location, scene.camera.look_at)
        bsc.camera = cam
        for i, obj in enumerate(scene.objects):
            self._add_object(obj, pass_index=i + 1)
        world = bpy.data.worlds.new("world")
        bsc.world = world
        self._lights = []
        self.scene_id = scene.id
        bpy.context.view_layer.update()

    def _configure(self, bsc) -> None:
        s = self.settings
        r = bsc.render
        r.engine = "CYCLES"
        r.resolution_x, r.resolution_y, r.resolution_percentage = s.width, s.height, 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.film_transparent = False
        r.use_compositing = False
        r.use_sequencer = False
        r.use_persistent_data = True  # lightings of one scene re-use the synced geometry and BVH
        r.threads_mode = "FIXED" if s.threads else "AUTO"
        if s.threads:
            r.threads = s.threads
        c = bsc.cycles
        if self.device.backend == "CPU":
            c.device = "CPU"
        else:  # factory settings reset the preferences too: select the backend and its devices every build
            prefs = _cycles_prefs()
            with _capture_output():
                prefs.compute_device_type = self.device.backend
                prefs.refresh_devices()
            for d in prefs.devices:
                d.use = d.type == self.device.backend
            c.device = "GPU"
        c.samples = s.samples
        c.use_adaptive_sampling = False
        c.use_denoising = False
        c.seed = s.seed
        c.use_animated_seed = False
        c.max_bounces = s.max_bounces
        c.diffuse_bounces = s.diffuse_bounces
        c.glossy_bounces = s.glossy_bounces
        c.transmission_bounces = s.transmission_bounces
        c.transparent_max_bounces = s.transparent_bounces
        c.volume_bounces = 0
        c.pixel_filter_type = "BLACKMAN_HARRIS"
        c.filter_width = s.filter_width_px
        c.caustics_reflective = False  # fewer fireflies in few-sample renders; the decomposition is unaffected
        c.caustics_refractive = False
        c.sample_clamp_direct = 0.0   # no clamping: keeps the passes summing to Combined
        c.sample_clamp_indirect = 0.0
        bsc.view_settings.view_transform = "Standard"
        bsc.view_settings.look = "None"
        bsc.view_settings.exposure = 0.0
        bsc.view_settings.gamma = 1.0
        vl = bsc.view_layers[0]
        vl.name = VIEW_LAYER
        vl.use_pass_combined = True
        for p in _GT_PASSES:
            setattr(vl, p, s.ground_truth)
        if s.ground_truth:
            # one colour AOV: RGB = base colour, and Cycles writes alpha 1 at every surface hit, so its
            # alpha is the pixel's surface coverage (the mask) at no extra cost
            a = vl.aovs.add()
            a.name, a.type = ALBEDO_AOV, "COLOR"
            a = vl.aovs.add()
            a.name, a.type = NORMAL_AOV, "COLOR"   # colour AOVs keep negative values
        im = r.image_settings
        if s.ground_truth:
            im.media_type = "MULTI_LAYER_IMAGE"
            im.file_format = "OPEN_EXR_MULTILAYER"
        else:
            im.media_type = "IMAGE"
            im.file_format = "OPEN_EXR"
            im.color_mode = "RGBA"
        im.color_depth = "32"
        im.exr_codec = "NONE"  # a scratch file read straight back: compression would only cost time

    def _add_object(self, obj: Object, pass_index: int) -> None:
        ops = bpy.ops.mesh
        p = obj.primitive
        if p == "plane":
            ops.primitive_plane_add(size=2.0)
        elif p == "cube":
            ops.primitive_cube_add(size=2.0)
        elif p == "sphere":
            ops.primitive_uv_sphere_add(radius=1.0, segments=64, ring_count=32)
        elif p == "cylinder":
            ops.primitive_cylinder_add(radius=1.0, depth=2.0, vertices=64)
        elif p == "cone":
            ops.primitive_cone_add(radius1=1.0, radius2=0.0, depth=2.0, vertices=64)
        elif p == "torus":
            ops.primitive_torus_add(major_radius=1.0, minor_radius=0.25, major_segments=64, minor_segments=24)
        elif p == "mesh":
            self._import_mesh(obj.file)
        else:  # scene.py validates primitives; this guards against the two lists drifting apart
            raise ValueError(f"object {obj.name!r}: unknown primitive {p!r}")
        o = bpy.context.object
        o.name = obj.name
        o.location = obj.location
        o.rotation_euler = [math.radians(a) for a in obj.rotation_deg]
        o.scale = obj.scale
        o.pass_index = pass_index
        if obj.shade_smooth:
            # by angle: cylinder and cone caps stay flat, their sides and spheres/tori go smooth
            bpy.ops.object.shade_smooth_by_angle(angle=math.radians(40.0))
        else:
            bpy.ops.object.shade_flat()
        o.data.materials.clear()
        o.data.materials.append(self._material(obj.name, obj.material))

    def _import_mesh(self, file: str | None) -> None:
        path = str(file)
        ext = Path(path).suffix.lower()
        before = set(bpy.data.objects)
        importer = {".obj": bpy.ops.wm.obj_import, ".ply": bpy.ops.wm.ply_import, ".stl": bpy.ops.wm.stl_import}[ext]
        # vertex coordinates are taken as they are, Z up like the spec (not converted from a Y-up convention)
        importer(filepath=path, forward_axis="Y", up_axis="Z")
        new = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
        if not new:
            raise ValueError(f"mesh file {path} contains no mesh")
        bpy.ops.object.select_all(action="DESELECT")
        for o in new:
            o.select_set(True)
        bpy.context.view_layer.objects.active = new[0]
        if len(new) > 1:
            bpy.ops.object.join()
        bpy.ops.object.transform_apply(location=True, rotation=True, scale=True)

    # ---------------------------------------------------------------------------------- shading
    def _material(self, name: str, m: Material):
        mat = bpy.data.materials.new(f"mat_{name}")
        nt = mat.node_tree
        bsdf = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
        bsdf.inputs["Roughness"].default_value = m.roughness
        bsdf.inputs["Metallic"].default_value = m.metallic
        bsdf.inputs["IOR"].default_value = m.ior
        bsdf.inputs["Specular IOR Level"].default_value = m.specular
        source = self._base_color_source(nt, m.base_color) if isinstance(m.base_color, Texture) else None
        if source is None:
            bsdf.inputs["Base Color"].default_value = (*m.base_color, 1.0)
        else:
            nt.links.new(source, bsdf.inputs["Base Color"])
        if self.settings.ground_truth:
            # albedo AOV: fed from exactly what feeds Base Color, so it is the base colour by construction
            aov = nt.nodes.new("ShaderNodeOutputAOV")
            aov.aov_name = ALBEDO_AOV
            if source is None:
                aov.inputs["Color"].default_value = (*m.base_color, 1.0)
            else:
                nt.links.new(source, aov.inputs["Color"])
            normal = nt.nodes.new("ShaderNodeOutputAOV")
            normal.aov_name = NORMAL_AOV
            nt.links.new(nt.nodes.new("ShaderNodeNewGeometry").outputs["Normal"], normal.inputs["Color"])
        return mat

    @staticmethod
    def _base_color_source(nt, t: Texture):
        nodes, links = nt.nodes, nt.links
        if t.coords == "object":
            coord = nodes.new("ShaderNodeTexCoord").outputs["Object"]
        else:
            coord = nodes.new("ShaderNodeNewGeometry").outputs["Position"]
        if t.type == "checker":
            n = nodes.new("ShaderNodeTexChecker")
            links.new(coord, n.inputs["Vector"])
            n.inputs["Color1"].default_value = (*t.color1, 1.0)
            n.inputs["Color2"].default_value = (*t.color2, 1.0)
            n.inputs["Scale"].default_value = t.scale
            return n.outputs["Color"]
        if t.type == "stripes":
            sep = nodes.new("ShaderNodeSeparateXYZ")
            links.new(coord, sep.inputs[0])
            mul = nodes.new("ShaderNodeMath")
            mul.operation = "MULTIPLY"
            links.new(sep.outputs[t.axis.upper()], mul.inputs[0])
            mul.inputs[1].default_value = t.scale
            frac = nodes.new("ShaderNodeMath")
            frac.operation = "FRACT"
            links.new(mul.outputs[0], frac.inputs[0])
            fac = nodes.new("ShaderNodeMath")
            fac.operation = "LESS_THAN"
            links.new(frac.outputs[0], fac.inputs[0])
            fac.inputs[1].default_value = t.width
            fac_out = fac.outputs[0]
        else:  # noise
            add = nodes.new("ShaderNodeVectorMath")
            add.operation = "ADD"
            links.new(coord, add.inputs[0])
            add.inputs[1].default_value = t.offset
            noise = nodes.new("ShaderNodeTexNoise")
            noise.noise_dimensions = "3D"
            links.new(add.outputs[0], noise.inputs["Vector"])
            noise.inputs["Scale"].default_value = t.scale
            noise.inputs["Detail"].default_value = t.detail
            rng = nodes.new("ShaderNodeMapRange")
            rng.clamp = True
            links.new(noise.outputs["Fac"], rng.inputs["Value"])
            rng.inputs["From Min"].default_value = 0.3
            rng.inputs["From Max"].default_value = 0.7
            fac_out = rng.outputs["Result"]
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "MIX"
        mix.clamp_factor = True
        ins = {i.identifier: i for i in mix.inputs}
        links.new(fac_out, ins["Factor_Float"])
        ins["A_Color"].default_value = (*t.color2, 1.0)   # factor 1 (stripe / high noise) -> color1
        ins["B_Color"].default_value = (*t.color1, 1.0)
        return {o.identifier: o for o in mix.outputs}["Result_Color"]

    # --------------------------------------------------------------------------------- lighting
    def set_lighting(self, scene: Scene, lighting: Lighting) -> None:
        if self.scene_id != scene.id:
            raise RuntimeError(f"set_lighting({scene.id!r}) but the built scene is {self.scene_id!r}")
        bsc = bpy.context.scene
        for o in self._lights:
            data = o.data
            bpy.data.objects.remove(o, do_unlink=True)
            bpy.data.lights.remove(data)
        self._lights = [self._add_light(l, f"light_{i}") for i, l in enumerate(lighting.lights)]
        self._set_world(bsc.world, scene.world_for(lighting))

    @staticmethod
    def _set_world(world, w: World) -> None:
        bg = next(n for n in world.node_tree.nodes if n.bl_idname == "ShaderNodeBackground")
        bg.inputs["Color"].default_value = (*w.color, 1.0)
        bg.inputs["Strength"].default_value = w.strength

    @staticmethod
    def _add_light(l: Light, name: str):
        kind = {"sun": "SUN", "point": "POINT", "area": "AREA", "spot": "SPOT"}[l.type]
        data = bpy.data.lights.new(name, kind)
        data.color = l.color
        data.energy = l.strength
        size = l.size_or_default
        if kind == "SUN":
            data.angle = math.radians(size)
        elif kind == "AREA":
            data.shape = "SQUARE"
            data.size = size
        else:
            data.shadow_soft_size = size
            if kind == "SPOT":
                data.spot_size = math.radians(l.spot_size_deg)
                data.spot_blend = l.spot_blend
        o = bpy.data.objects.new(name, data)
        bpy.context.scene.collection.objects.link(o)
        o.location = l.location
        o.rotation_euler = _look_rotation(l.location, l.look_at)
        o.visible_camera = False  # the lamp itself never shows in the image; it still lights and reflects
        return o

    # ---------------------------------------------------------------------------------- render
    def camera_info(self) -> dict:
        bsc = bpy.context.scene
        bpy.context.view_layer.update()
        cam = bsc.camera
        w, h = self.settings.width, self.settings.height
        f_px = cam.data.lens / cam.data.sensor_width * max(w, h)  # sensor_fit AUTO: sensor spans the longer side
        world_from_camera = np.array(cam.matrix_world, dtype=np.float64)
        return {
            "world_from_camera": world_from_camera.round(8).tolist(),
            "lens_mm": cam.data.lens, "sensor_mm": cam.data.sensor_width, "sensor_fit": "AUTO (longer side)",
            "intrinsics_px": {"fx": f_px, "fy": f_px, "cx": w / 2.0, "cy": h / 2.0},
            "convention": "Blender camera: looks down -z, y up, x right; pixel (0, 0) is the top-left corner",
        }

    def camera_from_world(self) -> np.ndarray:
        bpy.context.view_layer.update()
        return np.array(bpy.context.scene.camera.matrix_world.inverted(), dtype=np.float64)

    def render(self) -> dict[str, np.ndarray]:
        """Render the current scene + lighting; return its passes as float32 [H, W, C], top row first."""
        bsc = bpy.context.scene
        path = self.tmp_dir / f"passes_{os.getpid()}.exr"
        bsc.render.filepath = str(path)
        with _quiet_stdout(self.quiet):
            bpy.ops.render.render(write_still=True)
        try:
            return read_passes(path, multilayer=self.settings.ground_truth)
        finally:
            path.unlink(missing_ok=True)


def read_passes(path: str | os.PathLike, multilayer: bool = True) -> dict[str, np.ndarray]:
    """Read Blender's EXR output: multilayer -> {pass name: array}; single layer -> {"Combined": RGBA}."""
    import OpenEXR

    order = ["R", "G", "B", "A", "X", "Y", "Z", "V"]
    out: dict[str, np.ndarray] = {}
    with OpenEXR.File(str(path), separate_channels=True) as f:
        for part in f.parts:
            groups: dict[str, dict[str, np.ndarray]] = {}
            for cname, ch in part.channels.items():
                bits = cname.split(".")
                if multilayer and len(bits) >= 3:
                    pass_name, c = ".".join(bits[1:-1]), bits[-1]   # ViewLayer.<pass>.<channel>
                else:
                    pass_name, c = "Combined", bits[-1]
                groups.setdefault(_PASS_ALIASES.get(pass_name, pass_name), {})[c] = np.asarray(ch.pixels)
            for name, chans in groups.items():
                keys = sorted(chans, key=lambda k: (order.index(k) if k in order else 99, k))
                out[name] = np.stack([chans[k].astype(np.float32, copy=False) for k in keys], axis=-1)
    return out
