"""User-facing error text: the exception's own words, its type in details, a mapping hook.

Issue #9, finding 2.
"""

from __future__ import annotations

import logging
import traceback

import pytest

from progress_sdk.failures import describe_error, error_type_name, traceback_text
from progress_sdk.testing import CapturingPublisher

SIGLIP = "SIGLIP-LSTM-V4"


class JobTimeoutException(Exception):
    """Stands in for rq's timeout exception."""


def gpu_text(error: BaseException) -> str | None:
    """The documented hook: friendly text for CUDA OOM, nothing for other RuntimeErrors."""
    if "CUDA out of memory" in str(error):
        return "The GPU ran out of memory; try again later"
    return None


def failed_data(pub: CapturingPublisher) -> dict[str, object]:
    """data of the one ANALYSIS_FAILED captured."""
    [event] = pub.events.of_type("ANALYSIS_FAILED")
    data: dict[str, object] = event["data"]
    return data


def test_error_message_has_no_class_name_and_details_keep_the_type():
    """A timeout reads as its own text; the class is in data.details.error_type."""
    pub = CapturingPublisher()
    with (
        pytest.raises(JobTimeoutException),
        pub.media("m1", "u1") as run,
        run.model(SIGLIP),
    ):
        raise JobTimeoutException("Task exceeded maximum timeout value (3 seconds)")
    data = failed_data(pub)
    assert data["error_message"] == "Task exceeded maximum timeout value (3 seconds)"
    assert data["details"] == {"error_type": f"{__name__}.JobTimeoutException"}
    [media] = pub.events.of_type("PROCESSING_FAILED")
    assert media["data"]["error_message"] == "Task exceeded maximum timeout value (3 seconds)"
    assert "JobTimeoutException" not in media["message"]
    pub.events.assert_valid()


def test_hook_maps_exception_types_to_friendly_text():
    """error_messages: a string per type, or a callable that may pass (None)."""
    pub = CapturingPublisher(
        error_messages={TimeoutError: "The analysis took too long", RuntimeError: gpu_text}
    )
    with pub.media("m1", "u1") as run:
        with run.model("A") as a:
            a.fail(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        with run.model("B") as b:
            b.fail(RuntimeError("shape mismatch"))
        with run.model("C") as c:
            c.fail(TimeoutError())
    texts = [e["data"]["error_message"] for e in pub.events.of_type("ANALYSIS_FAILED")]
    assert texts == [
        "The GPU ran out of memory; try again later",
        "shape mismatch",
        "The analysis took too long",
    ]
    assert pub.events.of_type("ANALYSIS_FAILED")[0]["data"]["details"] == {
        "error_type": "RuntimeError"
    }
    assert "The GPU ran out of memory" in pub.events.of_type("ANALYSIS_FAILED")[0]["message"]
    pub.events.assert_valid()


def test_most_specific_type_in_the_mapping_wins():
    """A subclass entry beats its base class's."""
    messages = {OSError: "storage problem", FileNotFoundError: "the upload is gone"}
    assert describe_error(FileNotFoundError("x"), messages)[0] == "the upload is gone"
    assert describe_error(PermissionError("x"), messages)[0] == "storage problem"


def test_a_hook_that_raises_falls_back_to_the_error_text(caplog):
    """A broken hook never hides the job's failure."""
    caplog.set_level(logging.WARNING, "progress_sdk")

    def broken(error: BaseException) -> str:
        raise KeyError("oops")

    assert describe_error(ValueError("bad codec"), {ValueError: broken}) == (
        "bad codec",
        "ValueError",
    )
    assert "error_messages hook" in caplog.text


def test_an_exception_whose_str_raises_still_gets_a_text():
    """str(error) raising gives the generic text, not a second exception."""

    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    text, kind = describe_error(Weird())
    assert text == "an unexpected error occurred"
    assert kind is not None and kind.endswith("Weird")


def test_error_type_name_leaves_builtins_short():
    """Builtins read as their name, others with their module."""
    assert error_type_name(ValueError()) == "ValueError"
    assert error_type_name(JobTimeoutException()) == f"{__name__}.JobTimeoutException"


def _formatted(error: BaseException) -> str:
    try:
        raise error
    except BaseException as raised:
        return "".join(traceback.format_exception(raised))


def test_a_traceback_from_another_process_gives_the_text_without_the_class():
    """RQ's horse hands over a formatted traceback: users read its text, no class name."""
    assert traceback_text(_formatted(ValueError("Invalid attribute name: jobs.run"))) == (
        "Invalid attribute name: jobs.run"
    )
    assert traceback_text(_formatted(JobTimeoutException("ran 3 s: too long"))) == (
        "ran 3 s: too long"
    )
    assert traceback_text(_formatted(RuntimeError("two\nlines"))) == "two lines"
    assert traceback_text(_formatted(KeyError())) == "an unexpected error occurred"
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("what the job ended with") from None
    except RuntimeError as chained:
        assert traceback_text("".join(traceback.format_exception(chained))) == (
            "what the job ended with"
        )


def test_text_that_is_not_a_traceback_comes_back_as_its_last_line():
    """RQ's own sentences (a horse that died) are passed through, stripped."""
    assert traceback_text("Work-horse terminated unexpectedly; waitpid returned 9\n") == (
        "Work-horse terminated unexpectedly; waitpid returned 9"
    )
    assert traceback_text("  ") == "an unexpected error occurred"
