"""One module per figure of benchmarks/README.md (Figures), each with
`measure(cfg, dbs) -> list[Row]`; benchmarks/run.py runs them in the order of its
FIGURES table."""
