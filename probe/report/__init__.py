"""What a reader opens: report.md of a run (with the image probe's sections), compare.md, and their figures
(numpy + matplotlib Agg, no torch). May import probe.stats, probe.design, probe.io and render."""
