"""Built-in datasets and loaders for user files.

- :mod:`.base`: the :class:`~softequiv.data.base.Dataset` record every task becomes.
- :mod:`.registry`: a built-in dataset by name, or a user's file, as a Dataset.
- :mod:`.synthetic`: the paper's synthetic benchmarks (inertia, CosSim, SE(3)).
- :mod:`.motion`: ``mujoco-ant`` forecasting rows; :mod:`.plumes`: ``smoke`` fields.
- :mod:`.simulators`: the physics behind them (:mod:`.simulators.mujoco`,
  :mod:`.simulators.smoke`), apart from :mod:`.windows` (trajectories -> rows) and
  :mod:`.cache` (simulations stored on disk).
- :mod:`.files`, :mod:`.normalize`, :mod:`.options`: user files, symmetry-safe scaling,
  option checks.
"""
