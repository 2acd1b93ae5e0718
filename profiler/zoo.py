"""The model zoo: the three real models, their bundled data, and how to build a serving replica.

Everything is built from data shipped inside installed packages; nothing is downloaded.

* ``linear_regression`` -- scikit-learn ``LinearRegression`` on the bundled diabetes data
  (10 features); quality is the R^2 on a held-out 20 % split.
* ``xgboost`` -- ``XGBClassifier`` on the bundled breast-cancer data (30 features); quality is
  the accuracy on a held-out, stratified 25 % split.
* ``resnet50`` -- torchvision ResNet50 (random weights unless a state-dict file is given) fed the
  two JPEG images bundled with scikit-learn (china.jpg, flower.jpg), preprocessed the ImageNet way
  (resize 256, centre crop 224, to tensor, normalize).

The profiler trains each model once (:func:`train_model`) and saves an *artifact* (the file a
replica loads: ``.npz`` coefficients, XGBoost ``.ubj``, a torch state dict). Replicas -- the
profiler's cold-start and memory probes, and later real serving processes -- call
:func:`build_model` (or :func:`load_model`) with that artifact.

Heavy libraries are imported inside the functions that need them, so that a replica of a tabular
model never imports torch, and importing this module costs nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simscale.errors import UserError

PredictFn = Callable[[Any], Any]
MakeInputsFn = Callable[[int], Any]

#: Environment variables that size the thread pools of OpenMP, MKL, OpenBLAS and friends.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLE_IMAGES = ("china.jpg", "flower.jpg")


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about a zoo model (no work is done to create one)."""

    name: str
    description: str
    framework: str
    devices: tuple[str, ...]
    batch_sizes_cpu: tuple[int, ...]
    batch_sizes_cuda: tuple[int, ...]
    batch_sizes_quick: tuple[int, ...]
    artifact_suffix: str


_POW2_1024 = tuple(2**k for k in range(11))

MODELS: dict[str, ModelSpec] = {
    "linear_regression": ModelSpec(
        name="linear_regression",
        description="scikit-learn LinearRegression on the bundled diabetes data (10 features)",
        framework="scikit-learn",
        devices=("cpu",),
        batch_sizes_cpu=_POW2_1024,
        batch_sizes_cuda=_POW2_1024,
        batch_sizes_quick=(1, 32, 1024),
        artifact_suffix=".npz",
    ),
    "xgboost": ModelSpec(
        name="xgboost",
        description="XGBClassifier (100 trees, depth 4) on the bundled breast-cancer data "
        "(30 features)",
        framework="xgboost",
        devices=("cpu", "cuda"),
        batch_sizes_cpu=_POW2_1024,
        batch_sizes_cuda=_POW2_1024,
        batch_sizes_quick=(1, 32, 1024),
        artifact_suffix=".ubj",
    ),
    "resnet50": ModelSpec(
        name="resnet50",
        description="torchvision ResNet50 on 224x224 RGB images (the bundled sample JPEGs)",
        framework="torch",
        devices=("cpu", "cuda"),
        batch_sizes_cpu=(1, 2, 4, 8, 16, 32),
        batch_sizes_cuda=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        batch_sizes_quick=(1, 2, 4),
        artifact_suffix=".pt",
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


@dataclass
class LoadedModel:
    """A model ready to serve: ``predict(make_inputs(b))`` runs one batch of ``b`` items."""

    name: str
    device: str
    threads: int
    predict: PredictFn
    make_inputs: MakeInputsFn
    n_parameters: int
    input_shape: list[int]
    estimator: Any = field(repr=False, default=None)


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`train_model` produced: the artifact a replica loads and the model's facts."""

    name: str
    artifact: Path
    quality: dict[str, float]
    n_parameters: int
    model_size_mb: float
    input_shape: list[int]
    weights: str


# -- threads ---------------------------------------------------------------------------------


def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with every thread-pool variable set to
    ``threads``; used for replica subprocesses so their pools start at the right size."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    return env


_limits: Any = None


def set_threads(threads: int) -> None:
    """Set the intra-op thread count of this process to ``threads``.

    Sets torch's intra-op pool (when torch is imported) and, through threadpoolctl, every BLAS and
    OpenMP pool loaded in the process. XGBoost's own ``nthread`` is set on the model by
    :func:`load_model`. The setting is process-wide: serve one thread count at a time.
    """
    global _limits
    if threads < 1:
        raise UserError(f"threads must be >= 1 (got {threads})", field="threads")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    _limits = threadpool_limits(limits=threads)


# -- data ------------------------------------------------------------------------------------


def sample_image_paths() -> list[Path]:
    """Paths of the JPEG images bundled with scikit-learn (found without importing sklearn)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError("scikit-learn is not installed; it ships the sample images")
    folder = Path(spec.origin).parent / "datasets" / "images"
    paths = [folder / name for name in SAMPLE_IMAGES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"bundled sample images are missing: {', '.join(missing)}")
    return paths


def sample_image_bytes() -> list[bytes]:
    """The encoded JPEG bytes of the bundled sample images."""
    return [p.read_bytes() for p in sample_image_paths()]


def image_transform() -> Callable[[Any], Any]:
    """The ImageNet evaluation transform: resize 256, centre crop 224, to tensor, normalize."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def preprocess_jpeg(data: bytes, transform: Callable[[Any], Any] | None = None) -> Any:
    """Decode one JPEG (bytes) with PIL and preprocess it to a normalized 3x224x224 tensor."""
    import io

    from PIL import Image

    transform = transform or image_transform()
    with Image.open(io.BytesIO(data)) as img:
        return transform(img.convert("RGB"))


def _tabular_data(name: str) -> tuple[Any, Any, Any, Any]:
    """Deterministic (X_train, X_test, y_train, y_test) of a tabular model's bundled data."""
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.model_selection import train_test_split

    if name == "linear_regression":
        x, y = load_diabetes(return_X_y=True)
        return tuple(train_test_split(x, y, test_size=0.2, random_state=0))
    x, y = load_breast_cancer(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=0.25, random_state=0, stratify=y))


def _rows_maker(name: str) -> MakeInputsFn:
    """``make_inputs`` of a tabular model: rows of its held-out split, loaded on first use."""
    import numpy as np

    rows: list[Any] = []

    def make_inputs(batch_size: int) -> Any:
        """A (batch_size, n_features) float64 array of real held-out rows (cycled as needed)."""
        if not rows:
            rows.append(np.ascontiguousarray(_tabular_data(name)[1]))
        x = rows[0]
        return np.ascontiguousarray(x[np.arange(batch_size) % len(x)])

    return make_inputs


# -- training (once, by the profiler) --------------------------------------------------------


def check_model_name(name: str) -> ModelSpec:
    """The spec of model ``name``, or a :class:`UserError` naming the valid models."""
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(
            f"unknown model '{name}' (valid: {', '.join(MODEL_NAMES)})", field="models"
        ) from None


def train_model(name: str, artifact_dir: Path, weights_path: Path | None = None) -> TrainedModel:
    """Build/train model ``name`` from its bundled data and save the artifact a replica loads.

    For ``resnet50``, ``weights_path`` (a torch state dict of torchvision's ResNet50) is used
    as the artifact when given; otherwise the randomly initialised weights (seed 0) are saved.
    ``model_size_mb`` is the artifact's size in MiB.
    """
    check_model_name(name)
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    path = artifact_dir / f"{name}{MODELS[name].artifact_suffix}"
    if name == "linear_regression":
        import numpy as np
        from sklearn.linear_model import LinearRegression

        x_tr, x_te, y_tr, y_te = _tabular_data(name)
        est = LinearRegression().fit(x_tr, y_tr)
        quality = {"r2": float(est.score(x_te, y_te))}
        np.savez(path, coef=est.coef_, intercept=np.asarray(est.intercept_))
        n_params = int(est.coef_.size + 1)
        shape = [int(x_tr.shape[1])]
        weights = "trained at profile time"
    elif name == "xgboost":
        from xgboost import XGBClassifier

        x_tr, x_te, y_tr, y_te = _tabular_data(name)
        est = XGBClassifier(
            n_estimators=100,
            max_depth=4,
            learning_rate=0.1,
            tree_method="hist",
            random_state=0,
            n_jobs=os.cpu_count() or 1,
        ).fit(x_tr, y_tr)
        quality = {"accuracy": float((est.predict(x_te) == y_te).mean())}
        est.save_model(path)
        n_params = _xgb_nodes(est)
        shape = [int(x_tr.shape[1])]
        weights = "trained at profile time"
    else:
        import torch

        if weights_path is not None:
            path = Path(weights_path)
            model = _load_resnet50(path, "cpu")  # validates the file before anything is measured
            weights = f"from {path}"
        else:
            model = _resnet50_module()
            torch.save(model.state_dict(), path)
            weights = "random (torchvision resnet50(weights=None), seed 0)"
        n_params = int(sum(p.numel() for p in model.parameters()))
        shape = [3, 224, 224]
        quality = {}
    size_mb = path.stat().st_size / 2**20
    return TrainedModel(name, path, quality, n_params, size_mb, shape, weights)


def _xgb_nodes(est: Any) -> int:
    """Number of tree nodes (each holds a split threshold or a leaf value)."""
    return int(sum(tree.count("\n") for tree in est.get_booster().get_dump()))


def _resnet50_module() -> Any:
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    return resnet50(weights=None)


def _load_resnet50(path: Path, device: str) -> Any:
    import torch
    from torchvision.models import resnet50

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError("weights file not found", source=path) from None
    except Exception as exc:  # torch raises many kinds for a bad file
        raise UserError(f"cannot load weights: {type(exc).__name__}", source=path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError("weights file does not hold a state dict", source=path)
    model = resnet50(weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise UserError(f"not a torchvision ResNet50 state dict ({first})", source=path) from None
    return model.to(device).eval()


# -- serving (every replica) -----------------------------------------------------------------


def load_model(
    name: str, threads: int, device: str = "cpu", weights_path: Path | str | None = None
) -> LoadedModel:
    """Load (or, without an artifact, build/train) model ``name`` for serving.

    ``weights_path`` is the artifact written by :func:`train_model` (for ``resnet50`` any
    torchvision ResNet50 state dict). Sets this process's thread count to ``threads``
    (:func:`set_threads`). ``predict`` runs one batch in inference mode and returns the
    predictions (on the CPU); ``make_inputs(b)`` returns a batch of ``b`` real inputs (rows of the
    bundled data, or the preprocessed bundled images) ready for ``predict``.
    """
    spec = check_model_name(name)
    if device not in spec.devices:
        raise UserError(
            f"model '{name}' cannot run on {device} (it runs on: {', '.join(spec.devices)})",
            field="device",
        )
    if weights_path is not None and not Path(weights_path).is_file():
        raise UserError("weights file not found", source=weights_path)
    if name == "resnet50":
        import torch  # noqa: F401  (so that set_threads reaches torch's pool)

    set_threads(threads)
    if name == "linear_regression":
        return _load_linear_regression(threads, weights_path)
    if name == "xgboost":
        return _load_xgboost(threads, device, weights_path)
    return _load_resnet(threads, device, weights_path)


def build_model(
    name: str, threads: int, device: str = "cpu", weights_path: Path | str | None = None
) -> tuple[PredictFn, MakeInputsFn]:
    """``(predict_fn, make_inputs)`` of a serving replica of ``name``; see :func:`load_model`."""
    model = load_model(name, threads, device, weights_path)
    return model.predict, model.make_inputs


def _load_linear_regression(threads: int, weights_path: Path | str | None) -> LoadedModel:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    if weights_path is None:
        x_tr, _, y_tr, _ = _tabular_data("linear_regression")
        est = LinearRegression().fit(x_tr, y_tr)
    else:
        try:
            with np.load(weights_path) as npz:
                coef, intercept = npz["coef"], npz["intercept"]
        except Exception as exc:
            raise UserError(
                f"not a linear_regression artifact ({type(exc).__name__})", source=weights_path
            ) from None
        est = LinearRegression()
        est.coef_ = np.asarray(coef, dtype=float)
        est.intercept_ = float(intercept)
        est.n_features_in_ = int(est.coef_.size)
    n_features = int(est.coef_.size)
    return LoadedModel(
        "linear_regression", "cpu", threads, est.predict, _rows_maker("linear_regression"),
        n_features + 1, [n_features], est,
    )


def _load_xgboost(threads: int, device: str, weights_path: Path | str | None) -> LoadedModel:
    from xgboost import XGBClassifier

    if weights_path is None:
        x_tr, _, y_tr, _ = _tabular_data("xgboost")
        est = XGBClassifier(
            n_estimators=100, max_depth=4, learning_rate=0.1, tree_method="hist",
            random_state=0, n_jobs=threads,
        ).fit(x_tr, y_tr)
    else:
        est = XGBClassifier()
        try:
            est.load_model(weights_path)
        except Exception as exc:
            raise UserError(
                f"not an xgboost artifact ({type(exc).__name__})", source=weights_path
            ) from None
    est.set_params(n_jobs=threads, device=device)
    n_features = int(est.get_booster().num_features())
    return LoadedModel(
        "xgboost", device, threads, est.predict, _rows_maker("xgboost"), _xgb_nodes(est),
        [n_features], est,
    )


def _load_resnet(threads: int, device: str, weights_path: Path | str | None) -> LoadedModel:
    import torch

    if weights_path is None:
        model = _resnet50_module().to(device).eval()
    else:
        model = _load_resnet50(Path(weights_path), device)
    images: list[Any] = []

    def make_inputs(batch_size: int) -> Any:
        """A (batch_size, 3, 224, 224) float32 CPU tensor of the preprocessed sample images
        (decoded and preprocessed on first use)."""
        if not images:
            transform = image_transform()
            images.extend(preprocess_jpeg(data, transform) for data in sample_image_bytes())
        return torch.stack([images[i % len(images)] for i in range(batch_size)])

    if device == "cpu":

        def predict(batch: Any) -> Any:
            """Class indices (CPU tensor) of one batch."""
            with torch.inference_mode():
                return model(batch).argmax(dim=1)

    else:

        def predict(batch: Any) -> Any:
            """Copy the batch to the GPU, run it, copy the class indices back (synchronises)."""
            with torch.inference_mode():
                return model(batch.to(device, non_blocking=True)).argmax(dim=1).cpu()

    n_params = int(sum(p.numel() for p in model.parameters()))
    return LoadedModel("resnet50", device, threads, predict, make_inputs, n_params,
                       [3, 224, 224], model)
