"""The probe's jobs, called by probe/__main__.py: run, stats, compare, merge, prompts, and `finish` (captures ->
statistics -> outputs) that run, stats and merge share. May import every probe layer."""
