"""`vtc`'s error handling: a user error is one line on stderr and exit code 2; a bug is a traceback and exit code 1;
`--debug` shows the traceback of a user error too."""

from __future__ import annotations

import pytest

import vtc
import vtc.info
from vtc.cli import main
from vtc.compressors import list_compressors


def run_vtc(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and stderr of `vtc ARGV` run in this process."""
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, command: str) -> str:
    """Check exit code 2 and a single `vtc COMMAND: error: ...` line; return the line."""
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"vtc {command}: error: ")
    return line


def test_unknown_compressor_names_the_registered_ones(capsys):
    line = assert_one_line_error(*run_vtc(capsys, "info", "nosuchmethod"), "info")
    assert "'nosuchmethod'" in line and all(name in line for name in list_compressors())
    assert '"unknown' not in line  # the message itself, not the KeyError's repr


@pytest.mark.parametrize("override", ["keep=abc", "keep=-3", "keep"])
def test_bad_override_is_a_user_error(capsys, override):
    assert_one_line_error(*run_vtc(capsys, "info", "stac", "--set", override), "info")


def test_missing_predictions_file(tmp_path, capsys):
    ground_truth = tmp_path / "g.jsonl"
    ground_truth.write_text('{"qid": 1, "relevant_windows": [[0, 1]]}\n')
    argv = ["evaluate", "--predictions", str(tmp_path / "missing.jsonl"), "--ground-truth", str(ground_truth)]
    line = assert_one_line_error(*run_vtc(capsys, *argv), "evaluate")
    assert "missing.jsonl" in line


def test_evaluate_without_inputs(capsys):
    line = assert_one_line_error(*run_vtc(capsys, "evaluate"), "evaluate")
    assert "--checkpoint" in line


def test_missing_train_config(tmp_path, capsys):
    line = assert_one_line_error(*run_vtc(capsys, "train", "--config", str(tmp_path / "missing.yaml")), "train")
    assert "missing.yaml" in line


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--encoder", "tiny", "--encoder-option", "width"], "--encoder-option must be KEY=VALUE"),
        (["--encoder", "nosuchencoder"], "encoder type must be one of"),
        (["--encoder", "vtc_no_such_module:factory"], "no module named 'vtc_no_such_module'"),
        (["--encoder", "vtc.encoders:no_such_factory"], "has no callable 'no_such_factory'"),
        (["--encoder", "tiny", "--num-frames", "0"], "num_frames must be an integer >= 1"),  # was silently 32
        (["--encoder", "tiny", "--size", "0"], "size must be"),  # was 1 x 1 frames
    ],
)
def test_features_bad_encoder_option(tmp_path, capsys, options, message):
    argv = ["features", "extract", "--videos", str(tmp_path), "--out", str(tmp_path / "cache"), *options]
    line = assert_one_line_error(*run_vtc(capsys, *argv), "features")
    assert message in line


def test_features_missing_video_folder(tmp_path, capsys):
    argv = [
        "features",
        "extract",
        "--videos",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "c"),
        "--encoder",
        "tiny",
    ]
    assert_one_line_error(*run_vtc(capsys, *argv), "features")


def test_argparse_usage_errors_still_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^2$") as exit_info:
        main(
            [
                "features",
                "extract",
                "--videos",
                str(tmp_path),
                "--out",
                str(tmp_path),
                "--encoder",
                "tiny",
                "--dtype",
                "x",
            ]
        )
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_synth_frame_size(tmp_path, capsys):
    argv = ["data", "synth", "--out", str(tmp_path), "--frame-size", "16", "16", "16"]
    assert "--frame-size" in assert_one_line_error(*run_vtc(capsys, *argv), "data")


@pytest.mark.parametrize("argv", [["--debug", "info", "nosuchmethod"], ["info", "nosuchmethod", "--debug"]])
def test_debug_shows_the_traceback(capsys, argv):
    code, err = run_vtc(capsys, *argv)
    assert code == 2
    assert err.startswith("Traceback") and "KeyError" in err
    assert err.splitlines()[-1].startswith("vtc info: error: unknown compressor 'nosuchmethod'")


def test_debug_is_in_the_help(capsys):
    with pytest.raises(SystemExit, match=r"^0$") as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--debug" in capsys.readouterr().out


def test_a_bug_prints_its_traceback(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("an internal invariant broke")

    monkeypatch.setattr(vtc.info, "run", broken)
    code, err = run_vtc(capsys, "info")
    assert code == 1
    assert err.startswith("Traceback") and "RuntimeError: an internal invariant broke" in err


def test_missing_llm_folder_names_llm_path(tmp_path):
    config = {"encoder": None, "feature_dim": 32, "compressor": {"name": "none"}}
    with pytest.raises(FileNotFoundError, match=r"llm\.path '/nonexistent' is not a folder"):
        vtc.build_model({**config, "llm": {"path": "/nonexistent"}})
    with pytest.raises(FileNotFoundError, match=r"llm\.path .* has no config\.json"):
        vtc.build_model({**config, "llm": {"path": str(tmp_path)}})


def test_a_user_error_is_printed_whole():
    from vtc.cli import error_message

    error = ValueError("--resume refuses a changed config:\n  optim.lr: 0.001 -> 0.01\n  run.seed: 0 -> 1")
    assert error_message(error).splitlines()[1:] == ["  optim.lr: 0.001 -> 0.01", "  run.seed: 0 -> 1"]
    assert error_message(KeyError("unknown compressor 'x'")) == "unknown compressor 'x'"
    assert error_message(ValueError()) == "ValueError"
