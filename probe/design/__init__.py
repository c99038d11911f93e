"""What the probe measures: prompt pairs and their generator, stimuli and noise seeds, the image probe's contrasts
over a render folder, which pairs a shard owns, the card's protocol. No torch; may import probe.io and render."""
