"""Nothing lost, nothing hung: every failure exits at once, one run holds a workdir, outputs
are never clobbered, eval falls back past bad checkpoints, a checkpoint item of the wrong shape
is moved aside, long documents stay bounded, gzipped files read as such."""

import gzip
import json
import os
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from configs import base
from data import sources
from runs import experiment
from data import domains, records
from helpers import run_main, start_main, tiny_config, untimed, wait_for_step
from lm import checkpoint as ckpt_lib
from lm import workdir as workdir_lib
from lm.metrics import read_metrics

SYNTHETIC = ("--config=configs/tiny.py", "--config.data.source=synthetic",
             "--config.model.vocab_size=256", "--config.train.progress_bar=False",
             "--config.train.warmup_steps=2", "--config.train.peak_flops=1e9")


def _domain(root, lines, name="mine", suffix=".jsonl"):
    os.makedirs(root / name, exist_ok=True)
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(root / name / f"train-0{suffix}", "wb") as f:
        f.write(b"".join(lines))
    with opener(root / name / f"validation-0{suffix}", "wb") as f:
        f.write(b'{"text": "held out text"}\n' * 8)
    return f"{name}={root}/{name}/{{split}}-*{suffix}"


def _seqio_flags(entry):
    return ("--config=configs/tiny.py", f"--config.data.domains={entry}",
            "--config.data.vocab=byte", "--config.model.vocab_size=512",
            "--config.data.heldout=False", "--config.train.steps=6",
            "--config.train.progress_bar=False", "--config.train.warmup_steps=2",
            "--config.data.eval_rows=8", "--config.train.peak_flops=1e9")


def _timed(workdir, *flags, timeout=90.0):
    t0 = time.time()
    out = run_main(workdir, *flags, check=False, timeout=timeout)
    return out, time.time() - t0


def test_a_bad_record_read_by_the_input_pipeline_exits_at_once(tmp_path):
    """With the record check off, the pipeline meets the bad line itself: the error, naming the
    file and line, must end the process (it used to hang in TensorFlow's shutdown)."""
    lines = [b'{"text": "fine document %d"}\n' % i for i in range(200)]
    lines[29] = b'{"body": "x"}\n'
    out, seconds = _timed(tmp_path / "run", *_seqio_flags(_domain(tmp_path, lines)),
                          "--config.data.check_records=False")
    assert out.returncode == 1 and seconds < 60, (out.returncode, seconds)
    assert "train-0.jsonl:30: no string field 'text'" in out.stderr
    assert "{{node" not in out.stderr  # no TensorFlow graph dump


def test_an_error_inside_the_step_exits_at_once(tmp_path):
    entry = _domain(tmp_path, [b'{"text": "fine document %d"}\n' % i for i in range(50)])
    out, seconds = _timed(tmp_path / "run", *_seqio_flags(entry),
                          "--config.reweight.instance=test_reliability:wrong_shape")
    assert out.returncode == 1 and seconds < 60, (out.returncode, seconds)
    assert "Traceback" in out.stderr  # a bug, not bad input: the whole traceback


class WrongShape:
    """Weights of a shape the step cannot use."""
    needs_losses = False

    def init(self):
        return ()

    def __call__(self, state, inputs):
        return inputs.loss_mask_BxL[:, :3], state, {}


def wrong_shape(cfg, env):
    return WrongShape()


def test_a_failed_asynchronous_save_exits_at_once(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(small)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip("cannot mount a small tmpfs here: " + mounted.stderr.decode()[:200])
    try:  # one checkpoint fits (the preflight passes), the second one does not
        out, seconds = _timed(small / "run", *SYNTHETIC, "--config.train.steps=40",
                              "--config.train.checkpoint_every=2")
    finally:
        subprocess.run(["umount", str(small)])
    assert out.returncode == 1 and seconds < 60, (out.returncode, seconds, out.stderr[-2000:])
    assert "No space left on device" in out.stderr


def test_one_run_per_workdir(tmp_path):
    workdir = str(tmp_path / "run")
    first = start_main(workdir, *SYNTHETIC, "--config.train.steps=150",
                       "--config.train.log_every=1", "--config.model.num_layers=1")
    wait_for_step(first, workdir, 3)
    with pytest.raises(RuntimeError, match=f"is in use by another run: pid {first.pid} on "
                                           f"{socket.gethostname()}"):
        experiment.run(tiny_config(steps=150), workdir, allow_config_change=True,
                       devices=jax.devices()[:1])
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-2000:]
    steps = [m["step"] for m in read_metrics(workdir) if "loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == 150  # one stream, not two
    assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))  # released


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_is_taken_over_and_another_hosts_is_not(tmp_path):
    cfg = tiny_config(steps=4)
    lock = tmp_path / workdir_lib.LOCK_FILE
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "since": "-"}))
    with pytest.warns(RuntimeWarning, match="no longer running"):
        experiment.run(cfg, str(tmp_path), devices=jax.devices()[:1])
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "noon"}))
    with pytest.raises(RuntimeError, match="in use by another run: pid 1 on elsewhere, since noon"):
        experiment.run(cfg, str(tmp_path), devices=jax.devices()[:1])
    assert lock.exists()  # not ours to remove


def test_a_rerun_of_a_finished_run_keeps_its_eval_and_its_config(tmp_path):
    workdir = str(tmp_path)
    first = experiment.run(tiny_config(steps=4, checkpoint_every=2), workdir,
                           devices=jax.devices()[:1])
    saved = open(os.path.join(workdir, "eval.json")).read()
    again = experiment.run(tiny_config(steps=4, checkpoint_every=2), workdir,
                           devices=jax.devices()[:1])
    assert again == first and open(os.path.join(workdir, "eval.json")).read() == saved
    config = open(os.path.join(workdir, "config.json")).read()
    wider = tiny_config(steps=4, checkpoint_every=2)
    wider.model.d_model = 64
    with pytest.raises(RuntimeError, match="no checkpoint .* restores"):
        experiment.run(wider, workdir, allow_config_change=True, devices=jax.devices()[:1])
    assert open(os.path.join(workdir, "config.json")).read() == config  # not rewritten
    workdir_lib.check_resume(tiny_config(steps=4, checkpoint_every=2), workdir,
                             defaults=base.get_config(),
                             has_checkpoint=True)  # the original command still resumes


def test_eval_falls_back_past_an_unreadable_checkpoint_and_names_the_workdir(tmp_path):
    cfg = tiny_config(steps=4, checkpoint_every=2)
    experiment.run(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    params = os.path.join(ckpt_lib.checkpoint_dir(str(tmp_path / "run")), "4", "params")
    for root, _, files in os.walk(params):
        for name in files:
            open(os.path.join(root, name), "w").close()
    exp = experiment.build(cfg, train=False)
    with pytest.warns(RuntimeWarning, match="step 4 .* failed to restore .* using step 2"):
        assert exp.evaluate(str(tmp_path / "run"), jax.devices()[:1]).step == 2
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"--workdir=.*empty.* no checkpoint"):
        experiment.run(cfg, str(tmp_path / "empty"), mode="eval", devices=jax.devices()[:1])


def _odm(**train):
    cfg = tiny_config(steps=6, checkpoint_every=2, **train)
    cfg.reweight.mixture = "odm"  # a host method, so the checkpoint has a host_mixture item
    return cfg


@pytest.fixture(scope="module")
def straight_odm(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("straight"))
    experiment.run(_odm(), workdir, devices=jax.devices()[:1])
    return workdir


@pytest.mark.parametrize("item", ["data", "host_mixture"])
def test_a_checkpoint_item_of_the_wrong_shape_is_moved_aside(tmp_path, item, straight_odm):
    workdir = str(tmp_path)
    experiment.run(_odm(run_steps=4), workdir, devices=jax.devices()[:1])
    with open(os.path.join(ckpt_lib.checkpoint_dir(workdir), "4", item, "metadata"), "w") as f:
        json.dump({"processes": [{"foo": 1}]}, f)  # valid JSON, not a state
    with pytest.warns(RuntimeWarning, match="step 4 failed to restore.*resumed from step 2"):
        experiment.run(_odm(), workdir, devices=jax.devices()[:1])
    assert os.listdir(ckpt_lib.checkpoint_dir(workdir) + "-corrupt")
    assert untimed(workdir) == untimed(straight_odm)  # as if step 4 had never been written


def test_a_workdir_that_is_a_file_fails_before_any_work(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        experiment.run(tiny_config(steps=2), str(path), devices=jax.devices()[:1])


def test_long_documents_are_cut_into_pieces_that_read_on(tmp_path, monkeypatch):
    text = " ".join(f"word{i}" for i in range(3000))  # ~26k characters
    assert "".join(records.pieces(text, 1000)) == text
    assert max(map(len, records.pieces(text, 1000))) <= 1000
    assert records.pieces("x" * 2500, 1000) == ["x" * 1000] * 2 + ["x" * 500]  # no space: cut
    monkeypatch.setattr(records, "MAX_PIECE_CHARS", 1000)
    from data import tasks, tokenizer
    entry = _domain(tmp_path, [json.dumps({"text": text}).encode() + b"\n",
                               b'{"text": "short"}\n'])
    spec = domains.parse_domain(entry)
    stream = tasks.RowStream(spec, tokenizer.load_vocabulary("byte"), 128, split="train",
                             shuffle=False, repeat=False)
    tokens = np.concatenate([r["targets"][r["segment_ids"] > 0] for r in stream])
    eos = tokenizer.load_vocabulary("byte").eos_id
    assert (tokens == eos).sum() == 2  # one per document, none between pieces
    assert bytes(int(t) - 3 for t in tokens if t >= 3).decode() == text + "short"


def test_gzipped_jsonl_is_read_through_gzip(tmp_path):
    entry = _domain(tmp_path, [b'{"text": "zipped document %d"}\n' % i for i in range(20)],
                    suffix=".jsonl.gz")
    assert records.check("mine", "jsonl", entry.split("=", 1)[1], "train", "text") == []
    cfg = tiny_config(steps=2)
    cfg.data.update(source="seqio", domains=entry, vocab="byte", heldout=False, seq_len=32)
    cfg.model.update(vocab_size=512, max_len=32)
    batch = next(sources.build_data(cfg).source)
    text = bytes(int(t) - 3 for t in batch["targets"][0] if t >= 3).decode()
    assert "zipped document" in text and '"text"' not in text  # parsed as JSON, not as text
    assert domains.parse_domain(entry).kind == "jsonl"
