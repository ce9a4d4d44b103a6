"""Active learning: a committee's disagreement picks the frames to label, committee-mean MD
explores, and the explore–label–retrain loop runs as named steps with its state on disk.

- :mod:`.committee`: K models, their mean and σ_F; training them with ``fit``; an ASE calculator.
- :mod:`.explore`: committee-mean Langevin MD that records σ_F and restarts from trusted frames.
- :mod:`.select`: frames between the σ bounds, thinned in time.
- :mod:`.labelling`: the reference method (xTB, DFT or any ASE calculator), in a process pool,
  each frame keyed by a hash and labelled once.
- :mod:`.loop`: :func:`learn`, the loop; :mod:`.report`: its log, plots and σ calibration.
"""

from .committee import (
    CommitteeCalculator,
    CommitteePrediction,
    committee_predict,
    committee_statistics,
    load_committee,
    train_committee,
)
from .explore import ExploreSettings, Trajectory, explore
from .labelling import frame_key, label_frames
from .loop import SIGMA_HIGH, SIGMA_LOW, LearnConfig, LearnResult, learn
from .select import candidates, select_frames

__all__ = [
    "CommitteeCalculator",
    "CommitteePrediction",
    "ExploreSettings",
    "LearnConfig",
    "LearnResult",
    "SIGMA_HIGH",
    "SIGMA_LOW",
    "Trajectory",
    "candidates",
    "committee_predict",
    "committee_statistics",
    "explore",
    "frame_key",
    "label_frames",
    "learn",
    "load_committee",
    "select_frames",
    "train_committee",
]
