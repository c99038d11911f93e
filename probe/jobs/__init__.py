"""The probe's jobs, called by probe/__main__.py: run, population, stats, compare, merge, prompts, and `finish` (captures ->
statistics -> outputs) that run, stats and merge share. May import every probe layer."""
