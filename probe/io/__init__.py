"""The probe's on-disk formats and what every job shares with its user: captures.npz, units.csv, JSON, a
finished run read back, the one-paragraph error, the --help formatter. May import numpy and render only."""
