"""Models: the registry (`list_models`, `get_info`, `load_model`), model cards and their SPADE defaults, one loader
per source (packaged ImageNet weights, torchvision, timm, users' checkpoints).

Modules: `registry` (names -> `ModelInfo`, `load_model`), `cards` (shipped model cards, SPADE settings),
`packaged` / `torchvision` / `timm` (one loader per source), `build` (architectures, strict loading,
`load_checkpoint`), `checkpoints` (reading users' files safely), `info` (`ModelInfo`, `LoadedModel`).
"""

from spade_engine.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier, Normalize, logits_of, two_class_logits
from spade_engine.errors import (
    CheckpointMismatchError,
    ModelLoadError,
    ModelOutputError,
    TorchScriptRefusedError,
    WeightsUnavailableError,
)
from spade_engine.models.build import architectures, build_architecture, load_checkpoint
from spade_engine.models.cards import (
    COMPACT_SPADE,
    SPADE_DEFAULTS,
    SPADE_VIEWS,
    out_of_domain,
    spade_augment,
    spade_bn_correction,
    spade_calibration,
    spade_defaults,
    spade_section,
    spade_solver,
    spade_views,
    spade_why,
)
from spade_engine.models.info import LoadedModel, ModelInfo
from spade_engine.models.registry import DEFAULT_MODEL, DEMO_TESTBED, get_info, list_models, load_model
from spade_engine.models.timm import TIMM_MODELS, TIMM_PREFIX, timm_available, timm_data_config, timm_weights_file
from spade_engine.models.torchvision import TORCHVISION_MODELS, TORCHVISION_PREFIX, torchvision_name, weights_cache_dir

__all__ = [
    "CheckpointMismatchError",
    "Classifier",
    "DEFAULT_MODEL",
    "DEMO_TESTBED",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "ModelInfo",
    "ModelLoadError",
    "ModelOutputError",
    "Normalize",
    "SPADE_DEFAULTS",
    "SPADE_VIEWS",
    "COMPACT_SPADE",
    "TIMM_MODELS",
    "TIMM_PREFIX",
    "TORCHVISION_MODELS",
    "TORCHVISION_PREFIX",
    "TorchScriptRefusedError",
    "WeightsUnavailableError",
    "architectures",
    "build_architecture",
    "get_info",
    "list_models",
    "load_checkpoint",
    "load_model",
    "logits_of",
    "out_of_domain",
    "spade_augment",
    "spade_bn_correction",
    "spade_calibration",
    "spade_defaults",
    "spade_section",
    "spade_solver",
    "spade_views",
    "spade_why",
    "timm_available",
    "timm_data_config",
    "timm_weights_file",
    "torchvision_name",
    "two_class_logits",
    "weights_cache_dir",
]
