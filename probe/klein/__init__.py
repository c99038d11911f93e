"""Everything that touches torch and the model: loading (hub, snapshot, tiny), token regions, capture objects,
card slices, editing calls with a reference image, reference preparation, ablation, the resumable capture loop.
May import probe.io and render; torch is imported lazily where `--help` passes through."""
