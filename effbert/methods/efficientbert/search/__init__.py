"""Architecture search: the stages' search spaces and the samplers (random, regularised evolution, LaNAS).

Pure library code: no file I/O, no tracking; every random draw comes from a `random.Random` passed in.
"""

from effbert.methods.efficientbert.search.samplers import (
    STRATEGIES,
    ClassifierNode,
    Evaluated,
    EvolutionSampler,
    LanasSampler,
    Proposal,
    RandomSampler,
    Sampler,
    build_tree,
    lanas_tree_height,
    make_sampler,
)
from effbert.methods.efficientbert.search.space import (
    FEATURES_PER_LAYER,
    NODE_VOCAB,
    PAPER_FRAME,
    PAPER_WINDOW,
    ParamWindow,
    SearchSpace,
    architecture_string,
    frame_params,
    parse_architecture_string,
    scaled_param_window,
    stage1_space,
    stage2_space,
    stage3_space,
)

__all__ = [
    "FEATURES_PER_LAYER",
    "NODE_VOCAB",
    "PAPER_FRAME",
    "PAPER_WINDOW",
    "STRATEGIES",
    "ClassifierNode",
    "Evaluated",
    "EvolutionSampler",
    "LanasSampler",
    "ParamWindow",
    "Proposal",
    "RandomSampler",
    "Sampler",
    "SearchSpace",
    "architecture_string",
    "build_tree",
    "frame_params",
    "lanas_tree_height",
    "make_sampler",
    "parse_architecture_string",
    "scaled_param_window",
    "stage1_space",
    "stage2_space",
    "stage3_space",
]
