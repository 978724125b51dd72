"""The Hydra layer: configs in, runs out.

- schema.py          the typed schema behind conf/ (top level, stopping, tracking)
- plugin_configs.py  the config nodes of gdexp's sweepers and launchers
- compose.py         a sweep's job configs, each composed and planned once
- task.py            the Hydra task: one config -> one recorded run
- grids.py           logspace/linspace/range/geomspace in overrides, clean decimals
- argv.py            the command line before Hydra reads it (grids, repeated keys, group values)
- named_sweeps.py    sweeps/*.yaml, the shipped ones and the user's ./sweeps/
- internals.py       the private Hydra APIs gdexp uses, fenced
- paths.py           where conf/ and sweeps/ live (a checkout or an installed wheel)
- sweepers/, launchers/
"""
