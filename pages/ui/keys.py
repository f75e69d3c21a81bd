"""Session-state keys, one constant per key, namespaced per page (`"debugger.sparsity"`).

Every session-state and element key of the app is written here and nowhere else; the key strings are what stored
sessions and tests use, so a rename changes the constant's name, never its value. Keys under `shared.` belong to
widgets every page reuses (model and sample pickers): their values survive page switches. Widget keys get the
`WIDGET` prefix; `state.persisted` mirrors their values into the plain key. A key written `X + ".{…}"` in a comment
takes a suffix (one widget per model, sample, layer …).
"""

from __future__ import annotations

WIDGET = "_w."  # prefix of a widget's own key; the un-prefixed key holds the value that survives navigation

# ---- shared sidebar widgets (pages/ui/model_picker.py, sample_picker.py)
MODEL = "shared.model"
CKPT_FILE = "shared.checkpoint.file"
CKPT_ARCH = "shared.checkpoint.arch"
CKPT_CLASSES = "shared.checkpoint.class_names"
CKPT_SIZE = "shared.checkpoint.input_size"
CKPT_MEAN = "shared.checkpoint.mean"
CKPT_STD = "shared.checkpoint.std"
SAMPLE_SOURCE = "shared.sample.source"
SAMPLE_EXAMPLE = "shared.sample.example"
SAMPLE_UPLOAD = "shared.sample.upload"
SAMPLE_RULE = "shared.sample.rule"  # (file, why): the rule that picked a real network's default photo

# ---- SPADE controls (reused by pages that prune; `scoped(page, name)` in spade_controls.spade_controls)
SPARSITY = "sparsity"
N_AUG = "n_aug"
SEED = "seed"
SKIP_FIRST = "skip_first"
SKIP_HEAD = "skip_head"
DAMP = "damp"
SOLVER = "solver"  # + ".{model}"
CROP_MIN = "crop_min"  # + ".{model}"
PROFILE = "profile"
BN_CORRECTION = "bn_correction"  # + ".{model}"
CALIBRATION = "calibration"  # + ".{model}"

# ---- result blocks (pages/ui/results.py)
PREDICTIONS_CHART = "predictions"

# ---- Debugger (pages/1_Debugger.py)
DEBUGGER = "debugger"
DEBUGGER_METHODS = "debugger.methods"
DEBUGGER_TARGET = "debugger.target"  # + ".{model}.{sample hash}": a new sample starts at its prediction
DEBUGGER_REDUCTION = "debugger.reduction"
DEBUGGER_PALETTE = "debugger.palette"
DEBUGGER_PICK_LAYER = "debugger.pick_gradcam_layer"
DEBUGGER_LAYER = "debugger.gradcam_layer"  # + ".{model}"
DEBUGGER_SALIENCY_CHART = "debugger.sal"  # + ".{method}"
DEBUGGER_LAYERS_CHART = "debugger.layers"

# ---- Teaching tour (pages/2_Teaching_tour.py, pages/ui/tour.py)
TOUR = "tour"  # namespace of the tour's SPADE controls (`tour.sparsity`, …)
TOUR_SOURCE = "tour.source"  # the demo sample (by its stated rule) or a sample picked by class and facet
TOUR_CLASS = "tour.class"
TOUR_FACET = "tour.facet"
TOUR_LAYER = "tour.layer"
TOUR_METHOD = "tour.method"
TOUR_STEPS = "tour.steps"
TOUR_TROJAN = "tour.trojan"  # + ".{class}": the trojan pasted on the sample, when the generator has several
TOUR_HESSIAN_CHART = "tour.hessian"
TOUR_MASK_CHART = "tour.mask"
TOUR_PREDICTION_CHART = "tour.pred"
TOUR_SALIENCY_CHART = "tour.saliency"

# ---- Neuron explorer (pages/3_Neuron_explorer.py, pages/ui/neurons.py)
NEURONS = "neurons"  # namespace of the page's SPADE controls
NEURONS_LAYER = "neurons.layer"
NEURONS_PICK = "neurons.pick"  # also + ".{layer}.{pick}": the neuron picked from a ranking
NEURONS_INDEX = "neurons.index"  # + ".{layer}"
NEURONS_OBJECTIVE = "neurons.objective"  # + ".{number of objectives}"
NEURONS_LATE_ONLY = "neurons.late"
NEURONS_STEPS = "neurons.steps"
NEURONS_SIZE = "neurons.size"
NEURONS_LR = "neurons.lr"
NEURONS_VIS_SEED = "neurons.vis_seed"
NEURONS_FACET = "neurons.facet"  # + ".{layer}"
NEURONS_PROBE_SOURCE = "neurons.probe_source"
NEURONS_PROBE_ZIP = "neurons.probe_zip"
NEURONS_SCORES_CHART = "neurons.scores"

# ---- Benchmarks (pages/4_Benchmarks.py, pages/ui/benchmarks.py)
BENCHMARKS_MODEL = "benchmarks.model"
BENCHMARKS_METHODS = "benchmarks.methods"
BENCHMARKS_COLUMNS = "benchmarks.columns"
BENCHMARKS_SAMPLES = "benchmarks.samples"
BENCHMARKS_LIVE = "benchmarks.live"  # the last live run's rows
BENCHMARKS_RUN_FILE = "benchmarks.run_file"  # path of a CSV written by `spade protocol --out`; its charts + ".{metric}"
BENCHMARKS_RUN_SUMMARY_CHART = "benchmarks.run_file.summary"
BENCHMARKS_LEVERS_CONFIDENT = "benchmarks.levers.confident"  # decision table on confident samples only
BENCHMARKS_LEVERS_CHART = "benchmarks.levers.chart"
BENCHMARKS_DEFAULT_CHART = "benchmarks.levers.default_chart"

# ---- Sparse decision layer (pages/5_Sparse_decision_layer.py, pages/ui/sparse_layer.py)
SPARSE_N = "sparse.n"
SPARSE_TROJAN = "sparse.trojan"
SPARSE_BUDGET = "sparse.budget"
SPARSE_LAMBDAS = "sparse.lambdas"
SPARSE_FOLDER = "sparse.folder"
SPARSE_ZIP = "sparse.zip"
SPARSE_CLASS = "sparse.class"
SPARSE_FEATVIS = "sparse.featvis"
SPARSE_METHOD = "sparse.method"

# ---- Critical pathways (pages/6_Critical_pathways.py, pages/ui/pathways.py)
PATHWAYS_KEEP = "pathways.keep"
PATHWAYS_GRANULARITY = "pathways.granularity"
PATHWAYS_SELECTION = "pathways.selection"
PATHWAYS_TARGET = "pathways.target"

# ---- Sobol regions (pages/7_Sobol_regions.py, pages/ui/sobol.py)
SOBOL = "sobol"  # namespace of the page's SPADE controls
SOBOL_REGIONS = "sobol.regions"
SOBOL_GRID = "sobol.grid"
SOBOL_SEGMENTS = "sobol.segments"
SOBOL_N = "sobol.n"
SOBOL_PERTURB = "sobol.perturb"
SOBOL_TARGET = "sobol.target"
SOBOL_SPADE = "sobol.spade"
SOBOL_RUN = "sobol.run"

# ---- study pages: researcher access (pages/ui/access.py)
STUDY_ACCESS_RESEARCHER = "study_access.researcher"  # flag: this browser session gave the password
STUDY_ACCESS_PASSWORD = "study_access.password"
STUDY_ACCESS_FORM = "study_access.form"

# ---- Study designer (pages/8_Study_designer.py, pages/ui/study.py)
DESIGNER_STUDY = "study_designer.study"
DESIGNER_BASE_URL = "study_designer.base_url"
DESIGNER_N_LINKS = "study_designer.n_links"
DESIGNER_QUESTION = "study_designer.question"
DESIGNER_MODEL = "study_designer.model"
DESIGNER_METHOD = "study_designer.method"
DESIGNER_FORM = "study_designer.form"

# ---- Study participant (pages/9_Study_participant.py, pages/ui/study.py)
PARTICIPANT_SHOWN = "study_participant.shown_at"  # + ".{study}.{token}.{trial}": when the trial was first shown
PARTICIPANT_REFUSED = "study_participant.refused"  # the plain message of a refused answer
PARTICIPANT_PAUSED = "study_participant.paused"
PARTICIPANT_LAST = "study_participant.last_answer"
PARTICIPANT_CHOICE = "choose"  # + ".{left|right|undecided}.{trial}": the answer buttons

# ---- Study results (pages/10_Study_results.py)
STUDY_RESULTS_STUDY = "study_results.study"
STUDY_RESULTS_PAIR = "study_results.pair"
STUDY_RESULTS_AGREEMENT_CHART = "study_results.agreement"
STUDY_RESULTS_RT_CHART = "study_results.rt"


def scoped(prefix: str, name: str) -> str:
    """`scoped("debugger", SPARSITY)` -> `"debugger.sparsity"`; also for a key's suffix: `scoped(TOUR_TROJAN, 3)`."""
    return f"{prefix}.{name}"
