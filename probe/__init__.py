"""ray-plantain's probe, one layer per folder; imports point down only (a folder may import the ones below it):

    probe/__main__.py   the command line (`python -m probe run|stats|compare|merge|prompts`)
    probe/jobs/         the jobs: run, stats, compare, merge, prompts, and the step after capture they share
    probe/report/       report.md, compare.md and their figures (matplotlib)
    probe/klein/        torch and the model: loading, tiny model, token regions, capture, ablation, editing calls
    probe/design/       what is measured: prompt pairs, stimuli, the image probe's contrasts, shards, the card protocol
    probe/stats/        paired tests, nulls, split-half, bootstrap, unit classes, run comparison (numpy/scipy)
    probe/io/           captures.npz, units.csv, JSON, a finished run read back, the one-paragraph error

report/ and klein/ do not import each other; design/ and stats/ do not import each other. `probe.model`,
`probe.capture` and `probe.captures` are deprecated re-exports of their new homes in klein/ and io/.
"""
