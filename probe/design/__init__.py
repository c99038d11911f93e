"""What the probe measures: prompt pairs, their control sets and generator, token counts, stimuli and noise seeds, the
image probe's contrasts over a render folder, which pairs a shard owns, the card's protocol. No torch (transformers only
when a tokenizer folder is loaded); may import probe.io and render."""
