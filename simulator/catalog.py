"""The models the deployed system runs, as the simulator fakes them.

Each ``ModelSpec`` lists the stages a real worker goes through for that model (docs/contract.md,
"The models the deployed system runs"), with realistic unit counts and per-unit times at
``--speed 1``, and the errors it fails with. Video models analyse hundreds of frames at
tens of milliseconds each and often render a visualisation; audio models extract the
audio, build a spectrogram (or scattering transform) and then classify windows; image
models report their unit of work (diffusion steps, experts, patches) as
``FRAME_ANALYSIS_PROGRESS``, because the contract has no image-specific progress type.

Everything here is data: ``simulator.job`` turns it into a timed plan with a seeded RNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from progress_sdk import EventType

__all__ = [
    "CATALOG",
    "MEDIA_ERRORS",
    "PRESETS",
    "ModelSpec",
    "PhaseStep",
    "ProgressStage",
    "Stage",
    "UnknownModelError",
    "resolve_models",
]

Kind = Literal["video", "audio", "image"]
Range = tuple[float, float]
ErrorTemplate = Callable[[random.Random], str]


@dataclass(frozen=True)
class ProgressStage:
    """A stage that reports ``progress/total`` units (frames, windows, steps)."""

    event: EventType
    phase: str
    units: tuple[int, int]
    """Inclusive range the unit count is drawn from."""
    seconds_per_unit: Range


@dataclass(frozen=True)
class PhaseStep:
    """A stage announced by a start and a complete event (audio extraction, spectrogram).

    The SDK sets ``data.phase`` of these events itself; ``what`` names the stage in the
    message (e.g. "scattering transform") so the model's flavour still shows.
    """

    start: EventType
    complete: EventType
    what: str
    seconds: Range


Stage = ProgressStage | PhaseStep


@dataclass(frozen=True)
class ModelSpec:
    """One model: its kind, what it goes through, and how it fails."""

    name: str
    kind: Kind
    load_seconds: Range
    stages: tuple[Stage, ...]
    errors: tuple[ErrorTemplate, ...]
    accuracy: float = 0.85
    """Probability that its prediction matches the media's simulated ground truth."""


class UnknownModelError(ValueError):
    """A model or preset name that is not in the catalog; the message lists the valid ones."""


# -- error messages ------------------------------------------------------------------

def _oom(rng: random.Random) -> str:
    want = rng.choice((0.5, 1.0, 1.5, 2.0, 3.0))
    used = rng.uniform(12.5, 15.2)
    return (
        f"CUDA out of memory. Tried to allocate {want:.2f} GiB (GPU 0; 15.77 GiB total "
        f"capacity; {used:.2f} GiB already allocated)"
    )


def _timeout(rng: random.Random) -> str:
    return f"Inference timed out after {rng.choice((120, 300, 600))} s"


def _no_face(rng: random.Random) -> str:
    return f"No face detected in {rng.randint(60, 99)}% of sampled frames"


def _decode(rng: random.Random) -> str:
    return f"Video decode error at frame {rng.randint(10, 900)}: corrupt H.264 slice data"


def _codec(rng: random.Random) -> str:
    return f"Unsupported codec: {rng.choice(('hevc (10-bit)', 'av1', 'prores'))}"


def _no_audio(rng: random.Random) -> str:
    return "No audio stream found in the media container"


def _short_audio(rng: random.Random) -> str:
    return f"Audio too short for analysis: {rng.uniform(0.2, 1.9):.1f} s (minimum 2.0 s)"


def _nan(rng: random.Random) -> str:
    return "Spectrogram generation failed: NaN values in STFT output"


def _small_image(rng: random.Random) -> str:
    side = rng.choice((64, 96, 128, 160))
    return f"Image resolution too small ({side}x{side}); minimum 224x224"


def _image_format(rng: random.Random) -> str:
    return f"Unsupported image format: {rng.choice(('image/heic', 'image/avif', 'image/tiff'))}"


def _weights(rng: random.Random) -> str:
    return "Model weights failed to load: checksum mismatch"


_COMMON = (_oom, _timeout, _weights)
_VIDEO_ERRORS = (*_COMMON, _no_face, _decode, _codec)
_AUDIO_ERRORS = (*_COMMON, _no_audio, _short_audio, _nan)
_IMAGE_ERRORS = (*_COMMON, _small_image, _image_format)


def _download(rng: random.Random) -> str:
    status = rng.choice(("404 Not Found", "403 Forbidden"))
    return f"Could not download media from storage: {status}"


def _moov(rng: random.Random) -> str:
    return "Could not decode media: moov atom not found (truncated upload?)"


def _empty(rng: random.Random) -> str:
    return "Media file is empty (0 bytes)"


MEDIA_ERRORS: tuple[ErrorTemplate, ...] = (_download, _moov, _empty)
"""Why a whole media fails before any model runs (PROCESSING_FAILED)."""


# -- the catalog ---------------------------------------------------------------------

_FRAMES = EventType.FRAME_ANALYSIS_PROGRESS
_WINDOWS = EventType.WINDOW_PROCESSING_PROGRESS
_VIS = EventType.VISUALIZATION_GENERATION_PROGRESS


def _video(
    name: str, frames: tuple[int, int], per_frame: Range, *, visual: bool, phase: str
) -> ModelSpec:
    stages: list[Stage] = [ProgressStage(_FRAMES, phase, frames, per_frame)]
    if visual:
        stages.append(ProgressStage(_VIS, "visualization", (60, 100), (0.015, 0.025)))
    return ModelSpec(name, "video", (0.6, 1.2), tuple(stages), _VIDEO_ERRORS)


def _audio(name: str, transform: str, windows: tuple[int, int], per_window: Range) -> ModelSpec:
    return ModelSpec(
        name,
        "audio",
        (0.3, 0.8),
        (
            PhaseStep(
                EventType.AUDIO_EXTRACTION_START,
                EventType.AUDIO_EXTRACTION_COMPLETE,
                "audio extraction",
                (0.3, 0.8),
            ),
            PhaseStep(
                EventType.SPECTROGRAM_GENERATION_START,
                EventType.SPECTROGRAM_GENERATION_COMPLETE,
                transform,
                (0.4, 1.2),
            ),
            ProgressStage(_WINDOWS, "window_classification", windows, per_window),
        ),
        _AUDIO_ERRORS,
    )


def _image(name: str, phase: str, units: tuple[int, int], per_unit: Range) -> ModelSpec:
    return ModelSpec(
        name,
        "image",
        (0.4, 1.0),
        (
            ProgressStage(_FRAMES, phase, units, per_unit),
            ProgressStage(_VIS, "heatmap", (8, 16), (0.03, 0.06)),
        ),
        _IMAGE_ERRORS,
    )


CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _video("SIGLIP-LSTM-V4", (150, 240), (0.025, 0.040), visual=True, phase="frame_analysis"),
        _video("COLOR-CUES-LSTM-V1", (120, 240), (0.020, 0.030), visual=True,
               phase="color_cue_extraction"),
        _video("EFFICIENTNET-B7-V1", (100, 160), (0.045, 0.065), visual=True,
               phase="frame_analysis"),
        _video("EYEBLINK-CNN-LSTM-V1", (150, 300), (0.020, 0.030), visual=False,
               phase="blink_detection"),
        _video("CROSS-EFFICIENT-VIT-GAN", (100, 180), (0.040, 0.055), visual=True,
               phase="frame_analysis"),
        _video("LIP-FD-V1", (150, 240), (0.030, 0.040), visual=False, phase="lip_tracking"),
        _audio("SCATTERING-WAVE-V1", "scattering transform", (30, 60), (0.05, 0.08)),
        _audio("MEL-SPECTROGRAM-CNN-V3", "mel spectrogram", (40, 90), (0.04, 0.06)),
        _audio("STFT-SPECTROGRAM-CNN-V3", "STFT spectrogram", (40, 90), (0.04, 0.06)),
        _audio("AUDIO-MFT-CRNN-V1", "MFT spectrogram", (30, 70), (0.06, 0.09)),
        _image("DISTIL-DIRE-V1", "diffusion_reconstruction", (20, 50), (0.06, 0.12)),
        _image("MFF-MOE-V1", "expert_inference", (8, 8), (0.15, 0.30)),
        _image("CROSS-EFFICIENT-VIT-IMG", "patch_analysis", (16, 64), (0.02, 0.04)),
    )
}

PRESETS: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name, spec in CATALOG.items() if spec.kind == kind)
    for kind in ("video", "audio", "image")
}
PRESETS["all"] = tuple(CATALOG)


def resolve_models(names: Iterable[str]) -> tuple[str, ...]:
    """Expand model names and presets (comma-separated allowed) into catalog names.

    Matching is case-insensitive; order follows the catalog and duplicates collapse.
    Raises ``UnknownModelError`` listing every valid name and preset.
    """
    wanted: set[str] = set()
    by_upper = {name.upper(): name for name in CATALOG}
    for item in names:
        for raw in item.split(","):
            token = raw.strip()
            if not token:
                continue
            if token.lower() in PRESETS:
                wanted.update(PRESETS[token.lower()])
            elif token.upper() in by_upper:
                wanted.add(by_upper[token.upper()])
            else:
                raise UnknownModelError(
                    f"unknown model {token!r}. Valid presets: {', '.join(PRESETS)}. "
                    f"Valid models: {', '.join(CATALOG)}"
                )
    if not wanted:
        raise UnknownModelError(
            f"no models given. Valid presets: {', '.join(PRESETS)}. "
            f"Valid models: {', '.join(CATALOG)}"
        )
    return tuple(name for name in CATALOG if name in wanted)
