"""ray-plantain's renderer: procedural scenes -> Blender Cycles -> exact intrinsic ground truth.

    python -m render --help
    from render.dataset import load_sample        # read a sample (no bpy)
    from render import render_dataset             # render from Python (imports bpy when called)
"""
from render.pipeline import render_dataset

__all__ = ["render_dataset"]
