"""Jobs: one module per job, each config in -> library calls -> run folder out (config.json, metrics.jsonl,
.npz arrays, summary.json, PNG figures), on the scaffold of `jaxrecon.workdir`."""
