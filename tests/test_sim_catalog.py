"""Tests for simulator.catalog: the models, presets and name resolution."""

from __future__ import annotations

import random

import pytest

from progress_sdk import EventType
from simulator.catalog import (
    CATALOG,
    MEDIA_ERRORS,
    PRESETS,
    PhaseStep,
    ProgressStage,
    UnknownModelError,
    resolve_models,
)

CONTRACT_MODELS = {
    "video": {"SIGLIP-LSTM-V4", "COLOR-CUES-LSTM-V1", "EFFICIENTNET-B7-V1",
              "EYEBLINK-CNN-LSTM-V1", "CROSS-EFFICIENT-VIT-GAN", "LIP-FD-V1"},
    "audio": {"SCATTERING-WAVE-V1", "MEL-SPECTROGRAM-CNN-V3", "STFT-SPECTROGRAM-CNN-V3",
              "AUDIO-MFT-CRNN-V1"},
    "image": {"DISTIL-DIRE-V1", "MFF-MOE-V1", "CROSS-EFFICIENT-VIT-IMG"},
}


def test_catalog_holds_the_contracts_models_by_kind() -> None:
    """The catalog has exactly the models docs/contract.md lists, each of the right kind."""
    for kind, names in CONTRACT_MODELS.items():
        assert set(PRESETS[kind]) == names
    assert set(PRESETS["all"]) == set(CATALOG)


def test_video_models_analyse_hundreds_of_frames_at_tens_of_ms() -> None:
    """Video models report FRAME_ANALYSIS_PROGRESS over hundreds of frames, tens of ms each."""
    for name in PRESETS["video"]:
        first = CATALOG[name].stages[0]
        assert isinstance(first, ProgressStage)
        assert first.event is EventType.FRAME_ANALYSIS_PROGRESS
        assert first.units[0] >= 100
        assert 0.01 <= first.seconds_per_unit[0] <= first.seconds_per_unit[1] <= 0.1


def test_audio_models_extract_then_spectrogram_then_windows() -> None:
    """Audio models go through extraction, spectrogram generation and window progress."""
    for name in PRESETS["audio"]:
        stages = CATALOG[name].stages
        assert isinstance(stages[0], PhaseStep)
        assert stages[0].start is EventType.AUDIO_EXTRACTION_START
        assert isinstance(stages[1], PhaseStep)
        assert stages[1].complete is EventType.SPECTROGRAM_GENERATION_COMPLETE
        assert isinstance(stages[2], ProgressStage)
        assert stages[2].event is EventType.WINDOW_PROCESSING_PROGRESS


def test_error_messages_are_non_empty_text() -> None:
    """Every error template yields a non-empty message."""
    rng = random.Random(1)
    for spec in CATALOG.values():
        for template in spec.errors:
            assert template(rng).strip()
    for template in MEDIA_ERRORS:
        assert template(rng).strip()


def test_resolve_accepts_presets_names_commas_and_any_case() -> None:
    """Presets expand, names match case-insensitively, duplicates collapse in catalog order."""
    assert resolve_models(["audio"]) == PRESETS["audio"]
    assert resolve_models(["lip-fd-v1,SIGLIP-LSTM-V4", "siglip-lstm-v4"]) == (
        "SIGLIP-LSTM-V4", "LIP-FD-V1",
    )
    assert resolve_models(["image", "video"]) == (*PRESETS["video"], *PRESETS["image"])


def test_unknown_model_error_lists_valid_names() -> None:
    """An unknown name is refused with every valid preset and model named."""
    with pytest.raises(UnknownModelError) as info:
        resolve_models(["video,NOPE-V9"])
    message = str(info.value)
    assert "'NOPE-V9'" in message
    assert "SIGLIP-LSTM-V4" in message and "all" in message


def test_empty_model_list_is_refused() -> None:
    """An empty selection is an error, not a run with no models."""
    with pytest.raises(UnknownModelError):
        resolve_models([" , "])
