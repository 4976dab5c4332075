"""The FastAPI application of `genzoo serve`: a page, and a JSON API over the shipped models and the run folders
under RUN_ROOT. The shipped models are read from the installed package and nothing is ever written there (nor
into any run folder: uploads and answers stay in memory).

Every endpoint is documented at /docs (OpenAPI), so scripts can use the same API as the page.
Digits travel as 784 pixel values in [0, 1] (28 x 28, row by row); pictures come back as PNG
data URLs. Light requests (classify, reconstruct, denoise, sampling the fast models, latent
paths) are answered at once from the server's thread pool; heavy ones (pixel models, diffusion,
the editor) become jobs (see `jobs.py`) that the page polls at /api/jobs/ID.
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from safetensors import SafetensorError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import pretrained, registry, runs
from ..config import ConfigError, build
from ..evaluation.evaluator import load_evaluator
from ..images import grid
from ..metrics import psnr
from ..models.autoregressive import completion_rows, visible_mask
from ..models.base import CapabilityError
from ..models.dae import corrupt, parse_noise
from ..showcase.report import IMAGE_SUFFIXES, NOT_CURVES, flatten, fmt, read_json
from .inputs import (
    MAX_IMAGE_BYTES,
    Catalog,
    InputError,
    pixels_tensor,
    run_picture,
    upload_digit,
)
from .jobs import Job, JobBoard, watched

STATIC = Path(__file__).parent / "static"
MAX_INSTRUCTION = 200
MAX_MODELS_KEPT = 16
LATENT_MAP_STEPS = 15

Pixels = list[float]
Seed = Field(0, ge=0, le=2**31 - 1, description="seeds the noise: the same seed gives the same pictures")


# ---------------------------------------------------------------------------- request bodies


class DigitBody(BaseModel):
    pixels: Pixels = Field(description="784 values in [0, 1], the 28 x 28 digit row by row")


class DenoiseBody(DigitBody):
    noise: Literal["gaussian", "salt-and-pepper", "masking", "hide"] = "gaussian"
    level: float = Field(0.5, ge=0, le=10, description="noise strength (gaussian: std, else the share of pixels)")
    hide: Literal["bottom-half", "right-half", "box"] = "bottom-half"
    seed: int = Seed


class CompleteBody(DigitBody):
    hide: Literal["bottom-half", "right-half", "box"] = "bottom-half"
    completions: int = Field(4, ge=1, le=8)
    label: int | None = Field(None, ge=0, le=9, description="conditional models: the digit (default: the top class)")
    seed: int = Seed


class SampleBody(BaseModel):
    n: int = Field(16, ge=1, le=64)
    label: int | None = Field(None, ge=0, le=9)
    guidance: float | None = Field(None, ge=0, le=20, description="diffusion: classifier-free guidance weight")
    steps: int | None = Field(None, ge=1, le=1000, description="diffusion: DDIM steps")
    seed: int = Seed


class InterpolateBody(BaseModel):
    pixels: Pixels | None = Field(None, description="models listed with walk_from_digit (vae): start from this "
                                  "digit's code (else a prior draw; other models ignore it)")
    steps: int = Field(11, ge=2, le=32)
    label: int | None = Field(None, ge=0, le=9)
    seed: int = Seed


class EditBody(DigitBody):
    instruction: str = Field(min_length=1, max_length=MAX_INSTRUCTION)
    image_guidance: float = Field(1.5, ge=0, le=10)
    text_guidance: float = Field(7.5, ge=0, le=20)
    steps: int = Field(20, ge=1, le=200)
    seed: int = Seed


# ---------------------------------------------------------------------------- pictures and models


def png(images: torch.Tensor, nrow: int | None = None) -> str:
    """Images (N, 1, H, W) in [0, 1] as one PNG grid, as a data URL (enlarged by the page's CSS)."""
    images = images.detach().float().cpu()
    array = grid(images, nrow, padding=0 if len(images) == 1 else 2)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def capabilities(folder: Path) -> dict[str, Any]:
    """What the page may offer for a run, read from config.json and the model class's flags (no weights loaded)."""
    config = runs.read_config(folder)
    cls = registry.get(config["model"])
    cfg = build(cls.Config, config["hparams"], owner=config["model"])
    caps = {
        "model": config["model"], "data": config["data"], "seed": config["seed"],
        "weights": (folder / runs.WEIGHTS).exists(),
        "conditional": bool(getattr(cfg, "conditional", False)),
        "sample": bool(cls.can_sample), "heavy_sample": bool(cls.heavy_sampling),
        "reconstruct": bool(cls.can_reconstruct), "denoise": bool(cls.can_denoise),
        "complete": bool(cls.can_complete), "edit": bool(cls.can_edit),
        "interpolate": bool(cls.can_interpolate), "walk_from_digit": bool(cls.interpolates_from_digit),
        "latent_map": has_latent_map(cls, cfg),
        "sample_options": list(cls.sample_options),
    }
    if "guidance" in cls.sample_options:  # a guided diffusion model: the page's steps slider and guidance field
        caps["max_steps"] = cfg.timesteps
        caps["default_steps"] = cfg.sample_steps
        caps["default_guidance"] = cfg.guidance
    return caps


def has_latent_map(cls: type, cfg: Any) -> bool:
    """Whether a model of class `cls` with config `cfg` draws its latent space as a map (a 2-D one)."""
    return bool(cls.has_latent_map) and getattr(cfg, "latent_dim", 0) == 2


class Capabilities:
    """`capabilities` by run folder, read again only when its config.json changes: the page asks for the list at
    every load, and building each run's config (its checked types) is most of that answer's time. Whether the
    weights exist is looked up at every call (a training run writes them later)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cache: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}

    def __call__(self, folder: Path) -> dict[str, Any]:
        try:
            stat = (folder / runs.CONFIG).stat()
        except FileNotFoundError:
            return capabilities(folder)  # read_config's error: the folder is no run (any more)
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self.lock:
            cached = self.cache.get(folder)
        if cached is None or cached[0] != stamp:
            cached = (stamp, capabilities(folder))
            with self.lock:
                self.cache[folder] = cached
        return {**cached[1], "weights": (folder / runs.WEIGHTS).exists()}


class Models:
    """Trained models by run name, loaded on first use and again when model.safetensors changes."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.lock = threading.Lock()
        self.loading: dict[str, threading.Lock] = {}
        self.lock_guard = threading.Lock()
        self.locks: dict[str, threading.RLock] = {}
        self.cache: OrderedDict[str, tuple[tuple, torch.nn.Module]] = OrderedDict()
        self.evaluator = load_evaluator("cpu")

    def get(self, name: str) -> tuple[Path, Any]:
        folder = self.catalog.folder(name)
        weights = folder / runs.WEIGHTS
        try:
            stat = weights.stat()
        except FileNotFoundError:
            raise InputError(f"{name}: no {runs.WEIGHTS} yet (a training run writes it at its first checkpoint); "
                             "try again later", 409) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self.lock:
            lock = self.loading.setdefault(name, threading.Lock())
        with lock:
            cached = self.cache.get(name)
            if cached and cached[0] == stamp:
                self.cache.move_to_end(name)
                return folder, cached[1]
            try:
                model = runs.load(folder, "cpu")
            except (runs.RunError, ConfigError) as e:
                raise InputError(f"{name}: {e}", 409) from None
            except (SafetensorError, RuntimeError, OSError) as e:  # torn, corrupt or foreign weights
                raise InputError(f"{name}: its weights cannot be loaded ({type(e).__name__}: {e}); "
                                 "retrain the run or wait for its training to write them", 409) from None
            model.requires_grad_(False)
            with self.lock:
                self.cache[name] = (stamp, model)
                while len(self.cache) > MAX_MODELS_KEPT:
                    self.cache.popitem(last=False)
            return folder, model

    def using(self, name: str) -> threading.RLock:
        """Held while a request or a job uses the model of run `name`: one computation at a time per model,
        since a model may change its own state when used (a GAN refreshes its EMA generator's batch-norm
        statistics at its first sample). Different models work in parallel."""
        with self.lock_guard:
            return self.locks.setdefault(name, threading.RLock())

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> list[float]:
        return torch.softmax(self.evaluator.logits(x), dim=1)[0].tolist()


def _require(ok: bool, model, what: str, fix: str) -> None:
    if not ok:
        raise CapabilityError(f"{model.name}: {what}; {fix}")


# ---------------------------------------------------------------------------- the application


def create_app(root: str | Path | None = None, *, shipped: bool = True) -> FastAPI:
    """The app over the shipped models (`shipped`) and the run folders under `root` (which must exist), if given."""
    root = None if root is None else Path(root)
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of runs; give the folder that holds your run folders "
                                "(e.g. genzoo-demo after `genzoo demo`), or none to serve the shipped zoo")
    if root is None and not (shipped and pretrained.names()):
        raise ConfigError("no trained models ship with this copy of genzoo, so there is nothing to serve without a "
                         "RUN_ROOT; give the folder that holds your run folders (e.g. genzoo-demo after `genzoo "
                         "demo`)")
    catalog = Catalog(root, shipped=shipped)
    models = Models(catalog)
    board = JobBoard()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        board.shutdown()  # cancel what runs and waits, so that no model is mid-step when the process ends

    app = FastAPI(title="genzoo serve", description=__doc__, version="1", lifespan=lifespan)
    app.state.models, app.state.board, app.state.catalog = models, board, catalog
    app.middleware("http")(refuse_big_uploads)
    add_error_handlers(app)
    page = (STATIC / "index.html").read_text()  # read once: the first answer of a fresh server has no file to open
    app.get("/", include_in_schema=False, response_class=HTMLResponse)(lambda: page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(catalog_router(catalog))
    app.include_router(digit_router(models))
    app.include_router(answers_router(models))
    app.include_router(heavy_router(models, board))
    app.include_router(jobs_router(board))
    return app


async def refuse_big_uploads(request: Request, call_next):
    """Said before the body is read: an upload larger than any accepted image is not spooled at all."""
    length = request.headers.get("content-length", "")
    if request.method == "POST" and length.isdigit() and int(length) > MAX_IMAGE_BYTES + 64 * 1024:
        return JSONResponse({"error": f"the request has {int(length):,} bytes; an image may have at most "
                                      f"{MAX_IMAGE_BYTES:,}"}, status_code=413)
    return await call_next(request)


# ---------------------------------------------------------------------------- errors: one JSON shape, {"error": ...}


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as {"error": one line saying what was wrong and how to fix it}, with its status."""

    def answer(status: int | None = None):
        async def handler(request: Request, e: Exception) -> JSONResponse:
            return JSONResponse({"error": str(e)}, status_code=status or e.status)
        return handler

    app.add_exception_handler(InputError, answer())
    app.add_exception_handler(runs.RunError, answer(409))  # a run folder being written or damaged
    app.add_exception_handler(ConfigError, answer(422))
    app.add_exception_handler(CapabilityError, answer(422))
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:  # e.g. a path no route matches
    return JSONResponse({"error": f"{request.url.path}: {e.detail}"}, status_code=e.status_code)


async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
    """Pydantic's records as one line each: the field, what it should be, and what came."""
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"] if p != "body")
        given = err.get("input")
        if isinstance(given, str) and len(given) > 40:
            shown = f"{given[:20]!r}... ({len(given)} characters)"
        elif isinstance(given, (dict, list)):
            shown = f"a {type(given).__name__} of {len(given)}"
        else:
            shown = repr(given)
        lines.append(f"{where or 'body'}: {err['msg']} (got {shown})")
    return JSONResponse({"error": "; ".join(lines), "detail": jsonable(e.errors())}, status_code=422)


def jsonable(errors: list[dict]) -> list[dict]:
    """Pydantic's error records with only JSON-safe values (its `ctx` may hold exceptions)."""
    return [{k: (v if k in ("loc", "msg", "type") else str(v)) for k, v in err.items()} for err in errors]


# ---------------------------------------------------------------------------- the runs and their reports


def catalog_router(catalog: Catalog) -> APIRouter:
    """What is served: the runs and what each can do, each run's report and its pictures."""
    router = APIRouter()
    capabilities_of = Capabilities()

    @router.get("/api/runs", summary="The runs served (shipped models first) and what each can do")
    def list_runs():
        out = []
        for name, folder in catalog.runs().items():
            try:
                out.append({"name": name, "shipped": catalog.is_shipped(name), **capabilities_of(folder)})
            except (runs.RunError, ConfigError) as e:
                out.append({"name": name, "shipped": catalog.is_shipped(name), "error": str(e)})
        return {"root": catalog.describe(), "runs": out}

    @router.get("/api/runs/{name:path}/report", summary="A run's report: config, metrics, curves, pictures")
    def report(name: str):
        folder = catalog.folder(name)
        answer = run_report(folder, name)
        if catalog.is_shipped(name):
            answer["metrics"] = {**shipped_figures(name), **answer["metrics"]}
            # its config says "auto" (MNIST where the user has it); what it was trained and scored on is this
            answer["data"] = (read_json(folder / "evaluation.json") or {}).get("data") or answer["data"]
        return answer

    @router.get("/api/runs/{name:path}/files/{relative:path}", summary="A picture the run wrote")
    def picture(name: str, relative: str):
        return FileResponse(run_picture(catalog.folder(name), relative))

    return router


def shipped_figures(name: str) -> dict[str, str]:
    """A shipped model's lines of the report, from the manifest: how it was trained, and its headline figures
    on the full test set."""
    entry = pretrained.manifest()["models"].get(name[len(pretrained.PREFIX):])
    if entry is None:  # taken out of the manifest since the list was read
        raise InputError(f"{name}: no longer shipped; reload the page", 404)
    trained = f"{entry['cpu_seconds'] / 3600:.2f} CPU-hours of training"
    if entry.get("command"):
        trained += f": {entry['command']}"
    return {"trained": trained, **entry.get("headline", {})}


def run_report(folder: Path, name: str) -> dict[str, Any]:
    """What the report shows of a run, read from the files it wrote (nothing recomputed)."""
    config = runs.read_config(folder)
    # The metrics files are read only where they are plain files of the run: a symlink could point anywhere.
    outside = [name for name in (runs.METRICS, runs.METRICS_LOG) if not _own_file(folder, name)]
    try:
        metrics = {} if runs.METRICS in outside else \
            {k: fmt(v) for k, v in flatten(read_json(folder / runs.METRICS) or {}).items()}
    except ValueError as e:  # the report's message: which file, and to rerun `genzoo evaluate`
        metrics = {"error": str(e)}
    for name in outside:
        metrics[name] = f"not read: {name} is a symbolic link or lies outside the run folder"
    curves: dict[str, list] = {}
    try:
        for record in [] if runs.METRICS_LOG in outside else runs.read_metrics_log(folder):
            for key, value in record.items():
                if key not in NOT_CURVES and isinstance(value, (int, float)) and not isinstance(value, bool):
                    curves.setdefault(key, []).append([record.get("step", len(curves.get(key, []))), value])
    except runs.RunError as e:
        curves = {}
        metrics["metrics.jsonl"] = str(e)
    return {"name": name, "model": config["model"], "hparams": config["hparams"], "train": config["train"],
            "data": config["data"], "metrics": metrics, "curves": curves, "pictures": run_pictures(folder)}


def _own_file(folder: Path, name: str) -> bool:
    """True when folder/name is absent, or a file that is no symlink and lies inside the folder."""
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return True
    return not path.is_symlink() and path.resolve().is_relative_to(folder.resolve())


def run_pictures(folder: Path) -> list[str]:
    """The pictures inside a run folder (no symlink out, no hidden folder, no SVG), relative to it."""
    real = folder.resolve()
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.suffix.lower() != ".svg" and p.is_file()
                  and not p.is_symlink() and p.resolve().is_relative_to(real)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


# ---------------------------------------------------------------------------- the digit


def digit_router(models: Models) -> APIRouter:
    """A drawn or dropped picture -> the 28 x 28 digit the models get, and the evaluator's classes."""
    router = APIRouter()

    @router.post("/api/digit", summary="An uploaded PNG or JPEG -> the 28 x 28 digit the models get, and its class")
    def digit(image: Annotated[UploadFile, File(description=f"PNG or JPEG, at most {MAX_IMAGE_BYTES:,} bytes")]):
        data = image.file.read(MAX_IMAGE_BYTES + 1)
        x = upload_digit(data)
        probabilities = models.classify(x)
        return {"pixels": x.flatten().tolist(), "image": png(x), "probabilities": probabilities,
                "top": int(np.argmax(probabilities))}

    @router.post("/api/classify", summary="The evaluator's class probabilities for a digit")
    def classify(body: DigitBody):
        probabilities = models.classify(pixels_tensor(body.pixels))
        return {"probabilities": probabilities, "top": int(np.argmax(probabilities))}

    return router


# ---------------------------------------------------------------------------- light answers: at once


def answers_router(models: Models) -> APIRouter:
    """What a model answers at once: reconstructions, denoising, latent walks."""
    router = APIRouter(prefix="/api/runs")

    @router.post("/{name:path}/reconstruct", summary="Autoencoders: the reconstruction (VAE: its latent point)")
    def reconstruct(name: str, body: DigitBody):
        _, model = models.get(name)
        _require(model.can_reconstruct, model, "is not an autoencoder, it cannot reconstruct", "pick an ae/dae/vae")
        x = pixels_tensor(body.pixels)
        with models.using(name), torch.no_grad():
            x_hat = model.reconstruct(x)
        out = {"image": png(x_hat), "probabilities": models.classify(x_hat)}
        if has_latent_map(type(model), model.config):
            with models.using(name), torch.no_grad():
                out["latent"] = latent_point(model, x)
        return out

    @router.post("/{name:path}/denoise", summary="Denoising autoencoder: corrupt the digit, then clean it")
    def denoise(name: str, body: DenoiseBody):
        _, model = models.get(name)
        _require(model.can_denoise, model, "is not a denoising autoencoder", "pick a dae run")
        x = pixels_tensor(body.pixels)
        if body.noise == "hide":
            noisy = torch.where(visible_mask(body.hide), x, torch.zeros_like(x))
        else:
            kind, level = parse_noise(f"{body.noise}:{body.level}")  # the model's own range check
            noisy = corrupt(x, kind, level, torch.Generator().manual_seed(body.seed))
        with models.using(name), torch.no_grad():
            clean = model.denoise(noisy)
        return {"noisy": png(noisy), "denoised": png(clean), "psnr_noisy": float(psnr(noisy, x)),
                "psnr_denoised": float(psnr(clean, x)), "probabilities": models.classify(clean)}

    @router.post("/{name:path}/interpolate", summary="VAE and GANs: decoded digits along a latent line")
    def interpolate(name: str, body: InterpolateBody):
        _, model = models.get(name)
        with models.using(name), torch.no_grad():
            frames = latent_walk(model, body)
        return {"frames": [png(f[None]) for f in frames]}

    return router


def latent_point(model, x: torch.Tensor) -> dict[str, Any]:
    """A 2-D VAE's code for the digit x (1, 1, 28, 28), and where it lies on the decoded latent map."""
    mu = model.encode(x)[0][0]
    grid_images = model.latent_manifold(LATENT_MAP_STEPS)  # (S, S, 1, 28, 28)
    # the map spans Gaussian quantiles 0.05..0.95 on each axis, z2 decreasing down the rows
    where = torch.distributions.Normal(0, 1).cdf(mu).clamp(0.05, 0.95)
    return {"z": mu.tolist(), "map": png(grid_images.flatten(0, 1), LATENT_MAP_STEPS),
            "x": float((where[0] - 0.05) / 0.9), "y": float(1 - (where[1] - 0.05) / 0.9)}


def latent_walk(model, body: InterpolateBody) -> torch.Tensor:
    """Frames (S, 1, 28, 28) decoded along a straight line between two latent points; the digit sent is the
    start where the model can begin at a digit's code (else, as for every other model, a prior draw)."""
    _require(model.can_interpolate, model, "has no latent space to walk", "pick a vae, gan, cgan or dcgan run")
    start = pixels_tensor(body.pixels) if body.pixels is not None and model.interpolates_from_digit else None
    label = body.label if body.label is not None or not model.conditional else 0  # one line: one digit
    return model.interpolation(body.steps, rows=1, label=label, start=start,
                               generator=torch.Generator().manual_seed(body.seed))[0]


# ---------------------------------------------------------------------------- heavy work: jobs


def heavy_router(models: Models, board: JobBoard) -> APIRouter:
    """Sampling (a job for pixel models, diffusion and editors), pixel-model completion, the editor."""
    router = APIRouter(prefix="/api/runs")

    @router.post("/{name:path}/sample", summary="A grid of samples (pixel models, diffusion, editors: a job)")
    def sample(name: str, body: SampleBody):
        _, model = models.get(name)
        options = sample_options(model, body)
        nrow = 8 if body.n > 16 else 4

        def draw(job: Job | None = None) -> dict:
            generator = torch.Generator().manual_seed(body.seed)
            watching = watched(model, job) if job else contextlib.nullcontext()
            with models.using(name), watching, torch.no_grad():
                images = model.sample(body.n, y=body.label, generator=generator, **options)
            return {"image": png(images, nrow), "settings": model.sample_settings(**options)}

        if model.heavy_sampling:
            return {"job": board.view(board.submit(name, "sample", draw))}
        return draw()

    @router.post("/{name:path}/complete", summary="Pixel models: complete the hidden part (a job)")
    def complete(name: str, body: CompleteBody):
        _, model = models.get(name)
        _require(model.can_complete, model, "cannot complete digits", "pick a pixelcnn or pixelrnn run")
        x = (pixels_tensor(body.pixels) > 0.5).float()  # the pixel models see binary digits
        label = body.label
        if model.conditional and label is None:
            label = int(np.argmax(models.classify(x)))
        y = torch.tensor([label]) if model.conditional else None

        def work(job: Job) -> dict:
            with models.using(name), watched(model, job):
                generator = torch.Generator().manual_seed(body.seed)
                rows = completion_rows(model, x, body.hide, body.completions, y, generator)
            return {"visible": png(rows[1]), "completions": [png(r) for r in rows[2:]],
                    "probabilities": [models.classify(r) for r in rows[2:]]}

        return {"job": board.view(board.submit(name, "complete", work))}

    @router.post("/{name:path}/edit", summary="The instruction editor: apply an instruction to the digit (a job)")
    def edit(name: str, body: EditBody):
        _, model = models.get(name)
        check_edit(model, body)
        x = pixels_tensor(body.pixels)

        def work(job: Job) -> dict:
            with models.using(name), watched(model, job), torch.no_grad():
                out = model.edit(x, [body.instruction], image_guidance=body.image_guidance,
                                 text_guidance=body.text_guidance, steps=body.steps,
                                 generator=torch.Generator().manual_seed(body.seed))
            return {"image": png(out), "probabilities": models.classify(out.float().clamp(0, 1))}

        return {"job": board.view(board.submit(name, "edit", work))}

    return router


def sample_options(model, body: SampleBody) -> dict[str, Any]:
    """The sampling options asked for, checked against the model now (in the answer, not later in a job)."""
    options = {k: v for k, v in {"guidance": body.guidance, "steps": body.steps}.items() if v is not None}
    unknown = sorted(set(options) - set(model.sample_options))
    if unknown:
        raise InputError(f"{model.name}: sampling has no option {', '.join(unknown)} "
                         f"(its options: {', '.join(model.sample_options) or 'none'})")
    if body.label is not None and not model.conditional:
        raise InputError(f"{model.name}: this run is unconditional, it cannot draw a chosen digit; "
                         "leave the digit empty or pick a conditional run")
    model.sample_settings(**options)  # the model refuses what it could not run (e.g. more steps than it has)
    return options


def check_edit(model, body: EditBody) -> None:
    """An edit the model can do, checked now (in the answer, not later in a job)."""
    _require(model.can_edit, model, "is not an instruction editor", "pick an instruct run")
    if not body.instruction.strip():
        raise InputError(f"instruction {body.instruction!r} is empty; say what to do, e.g. 'make it bold'")
    model.edit_settings(body.image_guidance, body.text_guidance, body.steps)  # steps within its timesteps


# ---------------------------------------------------------------------------- the jobs themselves


def jobs_router(board: JobBoard) -> APIRouter:
    router = APIRouter(prefix="/api/jobs")

    @router.get("", summary="The heavy jobs: running and queued first, then the latest finished")
    def jobs():
        return {"jobs": board.views()}

    @router.get("/{job_id}", summary="One job: status, progress, place in its queue, result")
    def job(job_id: str):
        return board.view(board.get(job_id))

    @router.post("/{job_id}/cancel", summary="Cancel a job (a running one stops at its next step)")
    def cancel(job_id: str):
        return board.view(board.cancel(job_id))

    return router
