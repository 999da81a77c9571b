"""`vtc compare`: train and evaluate compressors on the same data, at the same token budgets, with the same encoder,
language model, recipe and seeds; one table per budget (accuracy, tokens to the LLM, parameters, FLOPs/MACs,
latency, peak memory) written as JSON + Markdown + an accuracy-vs-tokens plot under the run folder.

Every run adapts from the same base video LLM (the default presets: the shipped `bases/world-qformer`), or, from
nothing (`scratch`, `full`), starts from the same frozen stage-1 encoder and the same tiny language model written once
per comparison, so that only the compressor and its budget differ. The uncompressed model (`"none"`) is trained
once per seed and reported beside every budget. The frozen encoder's features of each video are computed once for
all runs, and a run already finished in the folder with the same config is reused, so a stopped comparison, or one
given more methods or budgets, trains only what is missing.

Modules: `presets` (what each preset compares, and the shipped base), `run` (settings, the grid, reuse of finished
runs, aggregation over seeds), `costs` (parameters, FLOPs, latency and peak memory of a trained model), `blind` (the
best video-blind answer), `report` (Markdown, plot, written outputs) and `cli` (`vtc compare`).
"""
