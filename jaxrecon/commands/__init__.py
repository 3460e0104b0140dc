"""The command-line layer: one module per command (its absl flags, bound from the job's config dataclass by
`config_flags.Binder`, and a `console()` entry point, installed as `jaxrecon-<command>`), and what they share
(`cli`: x64 on, --help listing the command's own flags, one-line errors). `scripts/<command>.py` runs the same
command from a checkout. Flags live here and in `scripts/` only; the library never reads them."""
