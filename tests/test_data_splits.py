"""Data splits of the `files` source: per-split durations, a test split, a validation split carved from training by
whole videos, and `vtc data check` (on the real Charades-STA files when ../shared/data is present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtc.cli import main
from vtc.data.moment import MomentItem
from vtc.train.config import DataConfig, load_train_config
from vtc.train.data import carve_validation, check_data, file_datasets, file_splits

ROOT = Path(__file__).resolve().parents[1]
CHARADES = ROOT.parent / "shared" / "data" / "charades_sta"


def needs_charades() -> None:
    if not CHARADES.exists():
        pytest.skip(f"real data not available: {CHARADES} (the shared data folder ../shared/data is absent)")


def charades_overrides(*extra: str) -> list[str]:
    """The shipped Charades-STA config pointed at the shared annotations (no videos: nothing counts as missing)."""
    return [
        f"data.train={CHARADES / 'charades_sta_train.txt'}",
        f"data.train_durations={CHARADES / 'Charades_v1_train.csv'}",
        f"data.test={CHARADES / 'charades_sta_test.txt'}",
        f"data.test_durations={CHARADES / 'Charades_v1_test.csv'}",
        "data.video_dir=null",
        *extra,
    ]


def item(video_id: str, index: int) -> MomentItem:
    return MomentItem(f"{video_id}-{index}", video_id, None, "a query", ((0.0, 1.0),), 10.0)


def write_split(folder: Path, name: str, videos: dict[str, int], length: float = 20.0) -> tuple[Path, Path]:
    """A Charades-STA text file with `count` queries per video and its durations csv."""
    lines = [f"{video} 1.0 5.0##query {i} of {video}\n" for video, count in videos.items() for i in range(count)]
    (folder / f"{name}.txt").write_text("".join(lines))
    (folder / f"{name}.csv").write_text("id,length\n" + "".join(f"{video},{length}\n" for video in videos))
    return folder / f"{name}.txt", folder / f"{name}.csv"


def test_the_shipped_charades_config_loads_every_split_of_the_real_files():
    needs_charades()
    config = load_train_config([ROOT / "configs/data/charades_sta.yaml"], charades_overrides())
    summary = check_data(config.data)
    train, val, test = (summary["splits"][split] for split in ("train", "val", "test"))
    assert (train["read"], train["loaded"], train["clamped"], train["skipped_bad_window"]) == (12_408, 12_404, 1_805, 4)
    assert (test["read"], test["loaded"], test["clamped"], test["skipped_bad_window"]) == (3_720, 3_720, 562, 0)
    assert train["missing_duration"] == test["missing_duration"] == 0
    assert train["items"] + val["items"] == 12_404 and val["carved_from"] == "train"
    assert val["videos"] == round(0.1 * (train["videos"] + val["videos"]))
    assert summary["shared_videos"] == {"train/val": 0, "train/test": 0, "val/test": 0}


def test_one_durations_file_for_both_charades_splits_loads_no_training_item(capsys):
    needs_charades()
    overrides = charades_overrides("data.train_durations=null", f"data.durations={CHARADES / 'Charades_v1_test.csv'}")
    config = load_train_config([ROOT / "configs/data/charades_sta.yaml"], overrides)
    assert config.data.split_durations("train") == config.data.split_durations("test")
    summary = check_data(config.data)
    assert summary["splits"]["train"]["missing_duration"] == 12_408
    assert summary["splits"]["train"]["items"] == summary["splits"]["val"]["items"] == 0
    arguments = [str(ROOT / "configs/data/charades_sta.yaml")] + [f"--set={text}" for text in overrides]
    assert main(["data", "check", *arguments]) == 1


def test_carved_validation_holds_whole_videos_drawn_by_the_seed():
    items = [item(f"v{video}", index) for video in range(10) for index in range(video % 3 + 1)]
    train, val = carve_validation(items, fraction=0.3, count=None, seed=0)
    val_videos = {i.video_id for i in val}
    assert len(val_videos) == 3 and val_videos.isdisjoint(i.video_id for i in train)
    assert sorted(train + val, key=items.index) == items
    assert val == [i for i in items if i.video_id in val_videos]  # every query of a held-out video, in file order
    assert carve_validation(items, 0.3, None, seed=0) == (train, val)
    draws = {frozenset(i.video_id for i in carve_validation(items, 0.3, None, seed)[1]) for seed in range(10)}
    assert len(draws) > 1
    assert len({i.video_id for i in carve_validation(items, None, 4, seed=0)[1]}) == 4
    assert len({i.video_id for i in carve_validation(items, 0.01, None, seed=0)[1]}) == 1  # at least one video


def test_carving_every_video_is_refused():
    items = [item("a", 0), item("b", 0)]
    with pytest.raises(ValueError, match="carving 2 validation videos needs more than the 2 training videos"):
        carve_validation(items, None, 2, seed=0)
    with pytest.raises(ValueError, match="needs a fraction or a count of the videos, got fraction=None, count=None"):
        carve_validation(items, None, None, seed=0)
    with pytest.raises(ValueError, match=r"got fraction=0\.5, count=1"):
        carve_validation(items, 0.5, 1, seed=0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"val_fraction": 0.1, "val_count": 5}, "val_fraction and data.val_count are both set"),
        ({"val": "v.txt", "val_fraction": 0.1}, r"data.val \('v.txt'\) and data.val_fraction are both set"),
        ({"val": "v.txt", "val_count": 3}, "data.val_count are both set"),
        ({"test_durations": "t.csv"}, "data.test_durations is set but data.test is not"),
        ({"val_durations": "v.csv", "val_fraction": 0.1}, "data.val_durations is set but data.val is not"),
        ({"val_fraction": 1.0}, r"data.val_fraction must be null or a number in \(0, 1\), got 1.0"),
        ({"val_fraction": 0}, r"data.val_fraction must be null or a number in \(0, 1\), got 0"),
        ({"val_fraction": True}, r"data.val_fraction must be null or a number in \(0, 1\), got True"),
        ({"val_count": 0}, "data.val_count must be null or an integer >= 1, got 0"),
        ({"choice_answer": "number"}, r"data.choice_answer must be one of \('letter', 'text'\), got 'number'"),
    ],
)
def test_contradicting_split_settings_are_refused(values, message):
    overrides = [f"data.{key}={json.dumps(value)}" for key, value in values.items()]
    with pytest.raises(ValueError, match=message):
        load_train_config([], ["data.train=t.txt", *overrides])


def test_each_split_reads_its_own_durations_else_the_shared_one():
    config = DataConfig(train="t.txt", val="v.txt", test="s.txt", durations="all.csv", test_durations="test.csv")
    assert [config.split_durations(split) for split in ("train", "val", "test")] == ["all.csv", "all.csv", "test.csv"]
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'test', got 'dev'"):
        config.split_durations("dev")


def test_file_splits_use_per_split_durations_and_drop_items_without_video(tmp_path):
    train_txt, train_csv = write_split(tmp_path, "train", {"a": 2, "b": 1, "c": 1, "d": 3})
    test_txt, test_csv = write_split(tmp_path, "test", {"e": 2, "f": 1}, length=3.0)
    videos = tmp_path / "videos"
    videos.mkdir()
    for video in ("a", "b", "c", "d", "e"):  # no file for f
        (videos / f"{video}.mp4").touch()
    config = DataConfig(
        train=str(train_txt),
        train_durations=str(train_csv),
        test=str(test_txt),
        test_durations=str(test_csv),
        val_count=1,
        video_dir=str(videos),
    )
    splits = file_splits(config)
    assert len(splits["train"]) + len(splits["val"]) == 7 and len(splits["test"]) == 2
    assert [entry.windows for entry in splits["test"].items] == [((1.0, 3.0),)] * 2  # clamped to the test csv's 3 s
    assert [len(data) for data in file_datasets(config)] == [len(splits["train"]), len(splits["val"])]
    summary = check_data(config)
    assert summary["splits"]["test"]["missing_video"] == 1 and summary["splits"]["test"]["missing_video_ids"] == ["f"]
    assert summary["splits"]["test"]["clamped"] == 3 and summary["videos_checked"] is True


def test_a_split_without_any_video_file_is_an_error_naming_it(tmp_path):
    train_txt, train_csv = write_split(tmp_path, "train", {"a": 1, "b": 1})
    config = DataConfig(train=str(train_txt), durations=str(train_csv), val_count=1)
    with pytest.raises(ValueError, match=r"data.train: no usable item .*data.video_dir is not set"):
        file_splits(config)
    with pytest.raises(ValueError, match="needs a validation split"):
        file_splits(DataConfig(train=str(train_txt), durations=str(train_csv)))


def test_vtc_data_check_prints_every_split_and_fails_on_shared_videos(tmp_path, capsys):
    train_txt, train_csv = write_split(tmp_path, "train", {"a": 2, "b": 1, "c": 1})
    config = tmp_path / "data.yaml"
    config.write_text(f"data: {{source: files, train: {train_txt}, durations: {train_csv}, val_count: 1}}\n")
    assert main(["data", "check", str(config)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["split", "items", "videos"]
    assert "val: carved from train" in table and "train/val 0" in table
    shared = ["--set", "data.val_count=null", "--set", f"data.val={train_txt}"]
    assert main(["data", "check", str(config), *shared]) == 1
    assert "train/val 3" in capsys.readouterr().out
    assert main(["data", "check", str(config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["read"] == 4 and summary["shared_videos"] == {"train/val": 0}


def test_check_data_gives_the_size_of_each_split_of_another_source():
    import vtc.world  # noqa: F401  (registers the synthetic source)

    config = DataConfig(source="synthetic", num_train=4, num_val=2, synthetic={"frame_size": 16})
    assert check_data(config) == {"source": "synthetic", "splits": {"train": {"items": 4}, "val": {"items": 2}}}
