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

from render.assets import primitive_mesh
from render.materials import NodeGraph, texture_graph
from render.scene import Light, Lighting, Material, Object, Scene, Sky, Texture, World
from render.settings import GPU_PREFERENCE, RenderSettings

ALBEDO_AOV = "albedo"
_LUMA = np.array([0.2126, 0.7152, 0.0722])
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


def _primitive_mesh(obj: Object):
    return primitive_mesh(obj.primitive, obj.profile, obj.segments)


def _socket(sockets, ref):
    """A node socket by index, identifier or (first) name."""
    if isinstance(ref, int):
        return sockets[ref]
    for s in sockets:
        if s.identifier == ref:
            return s
    for s in sockets:
        if s.name == ref:
            return s
    raise KeyError(f"no socket {ref!r} in {[s.identifier for s in sockets]}")


def instantiate(nt, graph: NodeGraph) -> dict:
    """Build a render.materials.NodeGraph in node tree `nt`; return its colour and factor output sockets."""
    made = {}
    for key, (idname, props, inputs) in graph.nodes.items():
        n = nt.nodes.new(idname)
        for k, v in props.items():
            setattr(n, k, v)
        for k, v in inputs.items():
            _socket(n.inputs, k).default_value = v
        made[key] = n
    for a, out, b, inp in graph.links:
        nt.links.new(_socket(made[a].outputs, out), _socket(made[b].inputs, inp))
    return {"color": _socket(made[graph.color[0]].outputs, graph.color[1]),
            "factor": _socket(made[graph.factor[0]].outputs, graph.factor[1]) if graph.factor else None}


def _sun_of(sky: Sky) -> Light:
    """The Sun light that stands in for the sky's sun disc: same direction, the sky's irradiance and colour."""
    d = sky.sun_direction
    return Light(type="sun", location=tuple(10.0 * c for c in d), look_at=(0.0, 0.0, 0.0),
                 strength=sky.sun_strength, size=sky.sun_angle_deg, temperature_k=sky.sun_kelvin)


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
        self.last_clamp = 0.0
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
        # adaptive sampling stops a pixel once its noise is below the threshold: every pass of the pixel is still
        # the mean over the same samples, so the decomposition stays exact
        c.use_adaptive_sampling = s.adaptive_threshold > 0
        c.adaptive_threshold = s.adaptive_threshold
        c.adaptive_min_samples = min(s.adaptive_min_samples, s.samples)
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
        c.sample_clamp_direct = 0.0   # direct light is never clamped; indirect only by render() (firefly_clamp)
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
        """One mesh object, its size baked into the vertices (scale 1), so bevels and `local` textures are metric."""
        if obj.primitive == "mesh":
            self._import_mesh(obj.file)
            o = bpy.context.object
            o.data.transform(mathutils.Matrix.Diagonal((*obj.scale, 1.0)))
        else:
            mesh = bpy.data.meshes.new(obj.name)
            verts, faces = _primitive_mesh(obj)
            mesh.from_pydata((verts * np.asarray(obj.scale)).tolist(), [], faces)
            mesh.validate(clean_customdata=False)
            o = bpy.data.objects.new(obj.name, mesh)
            bpy.context.scene.collection.objects.link(o)
        o.name = obj.name
        o.location = obj.location
        o.rotation_euler = [math.radians(a) for a in obj.rotation_deg]
        o.scale = (1.0, 1.0, 1.0)
        o.pass_index = pass_index
        mesh = o.data
        if obj.shade_smooth:
            # smooth, but edges sharper than 40 degrees stay sharp: cylinder and cone caps stay flat
            mesh.shade_smooth()
            mesh.set_sharp_from_angle(angle=math.radians(40.0))
        else:
            mesh.shade_flat()
        if obj.bevel > 0:
            mod = o.modifiers.new("bevel", "BEVEL")
            mod.width = obj.bevel
            mod.segments = 3
            mod.limit_method = "ANGLE"
            mod.angle_limit = math.radians(30.0)
            mod.harden_normals = True       # flat faces keep flat normals; only the rounded edge is smooth
            mesh.shade_smooth()
        mesh.materials.clear()
        mesh.materials.append(self._material(obj.name, obj.material, obj.scale))

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
    def _material(self, name: str, m: Material, scale=(1.0, 1.0, 1.0)):
        mat = bpy.data.materials.new(f"mat_{name}")
        nt = mat.node_tree
        bsdf = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
        bsdf.inputs["Metallic"].default_value = m.metallic
        bsdf.inputs["IOR"].default_value = m.ior
        bsdf.inputs["Specular IOR Level"].default_value = m.specular
        source = factor = None
        if isinstance(m.base_color, Texture):
            built = instantiate(nt, texture_graph(m.base_color, tuple(scale)))
            source, factor = built["color"], built["factor"]
        if source is None:
            bsdf.inputs["Base Color"].default_value = (*m.base_color, 1.0)
        else:
            nt.links.new(source, bsdf.inputs["Base Color"])
        if isinstance(m.roughness, tuple):
            rough = nt.nodes.new("ShaderNodeMapRange")
            rough.clamp = True
            nt.links.new(factor, rough.inputs["Value"])
            rough.inputs["To Min"].default_value, rough.inputs["To Max"].default_value = m.roughness
            nt.links.new(rough.outputs["Result"], bsdf.inputs["Roughness"])
        else:
            bsdf.inputs["Roughness"].default_value = m.roughness
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

    # --------------------------------------------------------------------------------- lighting
    def set_lighting(self, scene: Scene, lighting: Lighting) -> None:
        """Replace the lights and world; geometry and materials stay as built (albedo cannot change)."""
        if self.scene_id != scene.id:
            raise RuntimeError(f"set_lighting({scene.id!r}) but the built scene is {self.scene_id!r}")
        bsc = bpy.context.scene
        for o in self._lights:
            data = o.data
            bpy.data.objects.remove(o, do_unlink=True)
            bpy.data.lights.remove(data)
        world = scene.world_for(lighting)
        lights = list(lighting.lights)
        if world.sky is not None and world.sky.sun_strength > 0:
            lights.append(_sun_of(world.sky))
        self._lights = [self._add_light(l, f"light_{i}") for i, l in enumerate(lights)]
        if world.sky is not None or world.strength > 0:
            # portals over window openings: Cycles then samples the sky through the windows, not the whole dome
            for i, q in enumerate(scene.portals):
                self._lights.append(self._add_portal(q, f"portal_{i}"))
        self._set_world(bsc.world, world)

    @staticmethod
    def _set_world(world, w: World) -> None:
        nt = world.node_tree
        for n in [n for n in nt.nodes if n.bl_idname == "ShaderNodeTexSky"]:
            nt.nodes.remove(n)
        bg = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeBackground")
        if w.sky is None:
            bg.inputs["Color"].default_value = (*w.color, 1.0)
            bg.inputs["Strength"].default_value = w.strength
            return
        k = w.sky
        sky = nt.nodes.new("ShaderNodeTexSky")
        models = [e.identifier for e in sky.bl_rna.properties["sky_type"].enum_items]
        if k.model == "nishita":   # Blender 5 renamed Nishita to single scattering
            sky.sky_type = "NISHITA" if "NISHITA" in models else "SINGLE_SCATTERING"
        else:
            sky.sky_type = "MULTIPLE_SCATTERING"
        sky.sun_disc = False       # the sun is a Sun light in the same direction (see render.scene.Sky)
        sky.sun_elevation = math.radians(k.sun_elevation_deg)
        sky.sun_rotation = math.radians(k.sun_azimuth_deg % 360.0)
        sky.altitude = k.altitude_m
        sky.air_density, sky.ozone_density = k.air, k.ozone
        if hasattr(sky, "aerosol_density"):
            sky.aerosol_density = k.aerosol
        else:  # Blender 4: dust
            sky.dust_density = k.aerosol
        nt.links.new(sky.outputs["Color"], bg.inputs["Color"])
        bg.inputs["Strength"].default_value = k.strength

    @staticmethod
    def _add_light(l: Light, name: str):
        kind = {"sun": "SUN", "point": "POINT", "area": "AREA", "spot": "SPOT"}[l.type]
        data = bpy.data.lights.new(name, kind)
        data.color = l.color
        data.energy = l.strength
        if l.temperature_k is not None:
            data.use_temperature = True         # colour = color x this black body (Blender normalises its luminance)
            data.temperature = l.temperature_k
        size = l.size_or_default
        if kind == "SUN":
            data.angle = math.radians(size)
        elif kind == "AREA":
            data.shape = l.shape.upper()
            data.size = size
            if l.shape in ("rectangle", "ellipse"):
                data.size_y = l.size_y if l.size_y is not None else size
            data.spread = math.radians(l.spread_deg)
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

    @staticmethod
    def _add_portal(q, name: str):
        data = bpy.data.lights.new(name, "AREA")
        data.shape = "RECTANGLE"
        data.size, data.size_y = q.size, q.size_y
        data.cycles.is_portal = True
        o = bpy.data.objects.new(name, data)
        bpy.context.scene.collection.objects.link(o)
        o.location = q.location
        o.rotation_euler = _look_rotation(q.location, q.look_at)
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
        """Render the current scene + lighting; return its passes as float32 [H, W, C], top row first.

        With settings.firefly_clamp > 0 a small pre-pass (a quarter of the resolution, 4 samples/pixel)
        measures the mean image luminance first, and indirect light is clamped per sample at firefly_clamp
        times it (`self.last_clamp`). Cycles clamps a sample's contribution before splitting it into passes,
        so every pass sees the same clamped light and the ground-truth identity is unaffected.
        """
        bsc = bpy.context.scene
        c = bsc.cycles
        self.last_clamp = 0.0
        c.sample_clamp_indirect = 0.0
        if self.settings.firefly_clamp > 0:
            r = bsc.render
            r.resolution_percentage, c.samples, c.use_adaptive_sampling = 25, 4, False
            try:
                pre = self._render_once()
            finally:
                r.resolution_percentage, c.samples = 100, self.settings.samples
                c.use_adaptive_sampling = self.settings.adaptive_threshold > 0
            mean = float(np.asarray(pre["Combined"][..., :3], np.float64).mean(axis=(0, 1)) @ _LUMA)
            self.last_clamp = self.settings.firefly_clamp * mean if mean > 0 else 0.0
            c.sample_clamp_indirect = self.last_clamp
        return self._render_once()

    def _render_once(self) -> dict[str, np.ndarray]:
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
