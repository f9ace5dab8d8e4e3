"""A run that is killed mid-training resumes to the same tables as a run left alone,
which also shows runs from scratch deterministic on CPU; changing only how
checkpoints are evaluated retrains nothing.

All on tests/configs/nano.yaml (one method, two tasks), up to the tables: the figures
add nothing to these properties but jobs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from snakemake_harness import TAIL, job_counts, run_snakemake, start_snakemake

from continual_lora import layout
from continual_lora.atomic import atomic_directory, atomic_output
from continual_lora.checkpoint import CHECKPOINT_FILES

CONFIG = Path(__file__).parent / "configs" / "nano.yaml"
TARGET = "results/nano/tables/summary.csv"
TRAIN_LOG = layout.path(layout.log(layout.TASK, "train_task"), experiment="nano", method="naive", run="order0_seed0", task=1)
KILL_TIMEOUT_S = 300


def test_an_output_appears_only_when_its_writer_completes(tmp_path):
    folder, file = tmp_path / "samples", tmp_path / "grid.png"
    with pytest.raises(KeyboardInterrupt), atomic_directory(folder) as tmp:
        (tmp / "index.csv").write_text("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), atomic_output(file) as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(".grid.png.tmp-")  # PIL picks the format by suffix
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []

    # What a SIGKILLed writer leaves (no finally runs) is cleared by the next one.
    (tmp_path / ".samples.tmp-dead").mkdir()
    (tmp_path / ".grid.png.tmp-dead.png").write_text("half")
    folder.mkdir()
    (folder / "stale.png").write_text("from an earlier run")
    with atomic_directory(folder) as tmp:
        (tmp / "index.csv").write_text("whole")
    with atomic_output(file) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "samples"]
    assert [p.name for p in folder.iterdir()] == ["index.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask and file.stat().st_mode & 0o777 == 0o666 & ~umask


def snakemake(workdir: Path, *args: str, configfile: Path = CONFIG, ok: bool = True) -> str:
    """The run up to TARGET, on nano.yaml unless told."""
    return run_snakemake(workdir, configfile, TARGET, *args, ok=ok)


def tables(workdir: Path) -> dict[str, bytes]:
    """Every score file and table of the run, by path under results/."""
    root = workdir / "results" / "nano"
    files = [*root.rglob("scores.csv"), *(root / "tables").rglob("*")]
    return {str(path.relative_to(root)): path.read_bytes() for path in files if path.is_file()}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("clean")
    snakemake(workdir)
    return workdir


def kill_in_the_middle_of_training(workdir: Path) -> None:
    """Start the run in its own process group and SIGKILL the whole group (Snakemake
    and its jobs) once the first task's training loop has taken a step."""
    log = workdir / TRAIN_LOG
    run_log = workdir.parent / f"{workdir.name}.log"
    # One model job at a time, as the README's command runs them: the kill then finds
    # the training job alone, and the next run's complaint is the lock it left.
    process = start_snakemake(workdir, CONFIG, TARGET, log=run_log, gpu=1, start_new_session=True)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while not (log.exists() and re.search(r"^step \d+/", log.read_text(), re.M)):
            assert process.poll() is None, f"the run ended before its first training step:\n{run_log.read_text()[-TAIL:]}"
            assert time.monotonic() < deadline, "no training step within the time limit"
            time.sleep(0.01)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone if the run ended
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_run_killed_mid_training_resumes_to_the_same_tables(clean_run, tmp_path):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    kill_in_the_middle_of_training(workdir)

    results = workdir / "results"
    checkpoint = results / "nano/naive/order0_seed0/task1/checkpoint"
    log = (workdir / TRAIN_LOG).read_text()
    assert "done in" not in log  # killed inside the job, not after it
    assert not any((checkpoint / name).exists() for name in CHECKPOINT_FILES)
    # Every output folder that exists is whole: written aside and renamed when done.
    for concept in (results / "nano/data").glob("[!.]*"):
        assert (concept / "concept.json").is_file(), concept
    if (results / "models/tiny").exists():
        assert (results / "models/tiny/model_index.json").is_file()

    # The dead run's lock stays; Snakemake says how to remove it.
    assert "--unlock" in snakemake(workdir, ok=False)
    snakemake(workdir, "--unlock")
    snakemake(workdir, "--rerun-incomplete")

    # Byte for byte the tables of the clean run: this run started from nothing in a
    # folder of its own, so this is also the proof that two runs from scratch give
    # the same numbers on CPU.
    resumed, clean = tables(workdir), tables(clean_run)
    assert sorted(resumed) == sorted(clean) and any(name.endswith("scores.csv") for name in clean)
    for name in clean:
        assert resumed[name] == clean[name], name
    assert not [p for p in results.rglob("*") if ".tmp-" in p.name]  # no litter of the killed job


def changed_config(tmp_path: Path, section: str, **values) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    config[section] = config[section] | values
    path = tmp_path / f"{section}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def reversed_keys(value):
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    return value


def test_changing_only_evaluation_settings_reruns_only_evaluation(clean_run, tmp_path):
    assert "Nothing to be done" in snakemake(clean_run, "--dry-run")
    # The same config with every mapping's keys in reverse order changes nothing:
    # the rules' params are key-sorted, since Snakemake compares their text.
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(reversed_keys(yaml.safe_load(CONFIG.read_text())), sort_keys=False))
    assert "Nothing to be done" in snakemake(clean_run, "--dry-run", configfile=reordered)

    evaluation = changed_config(tmp_path, "evaluation", samples_per_prompt=3, inference_steps=3)
    counts = job_counts(snakemake(clean_run, "--dry-run", configfile=evaluation))
    assert counts == {
        "generate_base_samples": 1, "generate_samples": 2,
        "score_base_samples": 1, "score_samples": 2,
        "summarize_experiment": 1,
    }  # fmt: skip
    # The dry run, not --list-changes params: Snakemake 9.27 lists every output there,
    # changed or not.

    # The same question about a training setting does retrain: the check above is not vacuous.
    training = changed_config(tmp_path, "training", learning_rate=2.0e-3)
    assert job_counts(snakemake(clean_run, "--dry-run", configfile=training))["train_task"] == 2
