"""Generation into benchmark submissions and the three applications, on tiny components built in code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from emogen_bench.errors import UsageError  # noqa: E402
from emogen_bench.submission import read_metadata, validate_submission  # noqa: E402
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES  # noqa: E402
from reference.conditioning import (  # noqa: E402
    PLACEHOLDER,
    attribute_text,
    embed_texts,
    emotion_prompt_ids,
    encode_prompt,
)
from reference.generate import (  # noqa: E402
    DecompositionConfig,
    GenerateConfig,
    decomposition_table,
    emotion_decomposition,
    emotion_fusion,
    emotion_transfer,
    fused_hidden_states,
    generate_submission,
    generate_submission_summary,
    image_seed,
    initial_draws,
    mapped_text_embeddings,
    placeholder_for,
    plan_submission,
    prompt_hidden_states,
    submission_batches,
)
from reference.mapper import MappingNetwork  # noqa: E402
from reference.sd import tiny_sd_components  # noqa: E402
from reference.space import EmotionSpace  # noqa: E402

#: Small but valid: the benchmark needs a shorter side of at least 256 pixels.
SUBMISSION_CONFIG = GenerateConfig(per_emotion=2, steps=2, width=256, height=256, batch_size=2, show_progress=False)
#: For comparisons that need no validation: 64x64 images are much cheaper.
SMALL = GenerateConfig(per_emotion=2, steps=2, width=64, height=64, batch_size=4, show_progress=False)


@pytest.fixture(scope="module")
def components():
    return tiny_sd_components(seed=0)


@pytest.fixture(scope="module")
def mapper(components):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MappingNetwork(in_dim=768, hidden=64, out_dim=components.hidden_size).eval()


@pytest.fixture(scope="module")
def space():
    generator = torch.Generator().manual_seed(3)
    return EmotionSpace(
        mean={e: 4 * torch.randn(768, generator=generator) for e in EMOTION_NAMES},
        std={e: torch.rand(768, generator=generator) + 0.2 for e in EMOTION_NAMES},
    )


@pytest.fixture(scope="module")
def submission(tmp_path_factory, components, mapper, space) -> Path:
    out = tmp_path_factory.mktemp("generate") / "submission"
    generate_submission(SUBMISSION_CONFIG, components, mapper, space, out)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_image_seeds_are_distinct_and_fit_63_bits():
    seeds = [image_seed(s, e, i) for s in range(3) for e in range(8) for i in range(50)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert image_seed(0, 1, 2) == image_seed(0, 1, 2)


def test_batches_are_fixed_chunks_of_each_emotion():
    batches = submission_batches(plan_submission(3, 0), 2)
    assert [len(b) for b in batches] == [2, 1] * 8
    assert all(len({image.emotion for image in batch}) == 1 for batch in batches)


def test_each_image_draws_from_its_own_seed_whatever_the_batch(space):
    together_z, together_x = initial_draws(space, ["awe", "fear"], [11, 12], (4, 8, 8))
    alone_z, alone_x = initial_draws(space, ["fear"], [12], (4, 8, 8))
    assert torch.equal(together_z[1], alone_z[0]) and torch.equal(together_x[1], alone_x[0])
    generator = torch.Generator().manual_seed(12)
    expected_z = space.mean["fear"] + space.std["fear"] * torch.randn(768, generator=generator)
    expected_x = torch.randn((4, 8, 8), generator=generator)
    assert torch.allclose(alone_z[0], expected_z) and torch.equal(alone_x[0], expected_x)


def test_submission_is_valid_and_records_how_it_was_made(submission, components):
    report = validate_submission(submission, per_emotion=2, show_progress=False)
    assert report.valid, [p.to_dict() for p in report.problems]
    expected_paths = {f"{e}/{e}_{i:04d}.png" for e in EMOTION_NAMES for i in range(2)}
    assert set(_files(submission)) == expected_paths
    metadata = read_metadata(submission / "submission.json")
    assert metadata.seeds == {f"{e}/{e}_{i:04d}.png": image_seed(0, EMOTION_IDS[e], i)
                              for e in EMOTION_NAMES for i in range(2)}
    assert metadata.sampler == "UniPCMultistepScheduler"
    assert (metadata.steps, metadata.guidance, metadata.resolution) == (2, 7.5, (256, 256))
    assert metadata.base_model == components.model_id
    assert metadata.method.startswith("EmoGen")
    notes = json.loads(metadata.notes.split(": ", 1)[1])
    assert notes["seed"] == 0 and notes["mapper"].startswith("sha256:") and notes["prompt"] == PLACEHOLDER
    with Image.open(submission / "awe" / "awe_0000.png") as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (256, 256))


def test_resume_keeps_existing_images_and_fills_the_rest(submission, tmp_path, components, mapper, space):
    copy = tmp_path / "copy"
    shutil.copytree(submission, copy)
    removed = ["amusement/amusement_0001.png", "fear/fear_0000.png"]
    for name in removed:
        (copy / name).unlink()
    before = {k: v for k, v in _mtimes(copy).items() if k.endswith(".png")}
    summary = generate_submission_summary(SUBMISSION_CONFIG, components, mapper, space, copy)
    assert (summary.written, summary.kept) == (2, 14)
    assert set(summary.paths) == set(removed)
    after = _mtimes(copy)
    assert all(after[name] == mtime for name, mtime in before.items())
    # the regenerated images are bit for bit the ones of the first run (same seeds, same batches)
    assert _files(copy) == _files(submission)
    again = generate_submission_summary(SUBMISSION_CONFIG, components, mapper, space, copy)
    assert (again.written, again.kept) == (0, 16)
    assert validate_submission(copy, per_emotion=2, show_progress=False).valid


def test_same_seed_gives_identical_pngs_and_another_seed_differs(tmp_path, components, mapper, space):
    first = generate_submission(SMALL, components, mapper, space, tmp_path / "a")
    second = generate_submission(SMALL, components, mapper, space, tmp_path / "b")
    other = generate_submission(GenerateConfig(**{**SMALL.__dict__, "seed": 1}), components, mapper, space,
                                tmp_path / "c")
    a, b, c = _files(first), _files(second), _files(other)
    assert len(a) == 16 and a == b
    assert all(a[name] != c[name] for name in a)
    assert len(set(a.values())) == len(a)  # every image of a run differs from the others
    assert (first / "submission.json").read_bytes() == (second / "submission.json").read_bytes()


def test_refuses_a_folder_of_another_run_and_changes_nothing(submission, tmp_path, components, mapper, space):
    before = _mtimes(submission)
    with pytest.raises(UsageError, match="steps"):
        generate_submission(
            GenerateConfig(**{**SUBMISSION_CONFIG.__dict__, "steps": 3}), components, mapper, space, submission
        )
    with pytest.raises(UsageError, match="amusement_0001"):  # an earlier run had more images per emotion
        generate_submission(
            GenerateConfig(**{**SUBMISSION_CONFIG.__dict__, "per_emotion": 1}), components, mapper, space, submission
        )
    assert _mtimes(submission) == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        generate_submission(SMALL, components, mapper, space, stranger)
    assert sorted(p.name for p in stranger.iterdir()) == ["notes.txt"]


def test_a_folder_a_concurrent_shard_just_started_is_not_refused(tmp_path, components, mapper, space):
    out = tmp_path / "racing"
    for name in EMOTION_NAMES:  # another shard made the folders and is writing submission.json
        (out / name).mkdir(parents=True)
    (out / ".submission.json.0123456789ab.tmp").write_text("{")
    generate_submission(SMALL, components, mapper, space, out, shard=(1, 2))
    assert (out / "submission.json").is_file() and len(_files(out)) == 8
    taken = tmp_path / "taken"
    (taken / "awe").mkdir(parents=True)
    (taken / "awe" / "mine.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="not empty"):  # a non-empty emotion folder is someone's work
        generate_submission(SMALL, components, mapper, space, taken)


def test_a_damaged_image_is_named_not_overwritten(submission, tmp_path, components, mapper, space):
    copy = tmp_path / "damaged"
    shutil.copytree(submission, copy)
    target = copy / "awe" / "awe_0001.png"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(UsageError, match="awe/awe_0001.png"):
        generate_submission(SUBMISSION_CONFIG, components, mapper, space, copy)
    assert len(target.read_bytes()) == 100


def test_config_checks():
    with pytest.raises(UsageError):
        GenerateConfig(width=250)
    with pytest.raises(UsageError):
        GenerateConfig(prompt="a photo")


def test_emotion_transfer_writes_each_pair_and_a_grid(tmp_path, components, mapper, space):
    emotions, objects = ("awe", "fear"), ("bag", "cup")
    document = emotion_transfer(SMALL, components, mapper, space, tmp_path, objects=objects, emotions=emotions)
    assert [(r["emotion"], r["object"]) for r in document["images"]] == [(e, o) for e in emotions for o in objects]
    images = {f"{e}_{o}.png": np.asarray(Image.open(tmp_path / f"{e}_{o}.png")) for e in emotions for o in objects}
    assert all(image.shape == (64, 64, 3) for image in images.values())
    assert not np.array_equal(images["awe_bag.png"], images["awe_cup.png"])  # the object word matters
    assert not np.array_equal(images["awe_bag.png"], images["fear_bag.png"])  # so does the emotion
    with Image.open(tmp_path / "transfer.png") as grid:
        assert grid.width > 2 * 64 and grid.height > 2 * 64
    assert json.loads((tmp_path / "transfer.json").read_text())["images"][0]["prompt"] == f"{PLACEHOLDER} bag"
    with pytest.raises(UsageError, match="already holds"):
        emotion_transfer(SMALL, components, mapper, space, tmp_path, objects=objects, emotions=emotions)


def test_fusion_writes_each_pair_and_puts_both_emotions_in_the_prompt(tmp_path, components, mapper, space):
    pairs = [("awe", "fear"), ("anger", "sadness")]
    document = emotion_fusion(SMALL, components, mapper, space, tmp_path, pairs=pairs)
    assert [tuple(r["emotions"]) for r in document["images"]] == pairs
    assert all((tmp_path / f"{a}+{b}.png").is_file() for a, b in pairs)
    assert (tmp_path / "fusion.png").is_file() and (tmp_path / "fusion.json").is_file()
    placeholder_id = placeholder_for(components)
    z = torch.randn(2, 768, generator=torch.Generator().manual_seed(0))
    same = fused_hidden_states(components, mapper, placeholder_id, z[:1], z[:1])
    with torch.no_grad():
        # the mapper on the batch of two that fusion maps (one row alone could round differently on another CPU),
        # then the one-emotion prompt with that embedding in both places: the same float32 operations, bit for bit
        embeds = mapper(torch.cat([z[:1], z[:1]]))[:1]
        ids = emotion_prompt_ids(components.tokenizer, f"{PLACEHOLDER} {PLACEHOLDER}")
        direct = encode_prompt(components.text_encoder, ids, placeholder_id, embeds)
        single = encode_prompt(components.text_encoder, ids, placeholder_id, mapper(z[:1]))  # the mapper on one row
        one_emotion = prompt_hidden_states(components, mapper, placeholder_id, f"{PLACEHOLDER} {PLACEHOLDER}", z[:1])
    assert torch.equal(same, direct)
    assert torch.equal(one_emotion, single)
    mixed = fused_hidden_states(components, mapper, placeholder_id, z[:1], z[1:])
    assert not torch.allclose(mixed, same)


def test_decomposition_table_is_the_cosine_top_6(tmp_path, components, mapper, space):
    attributes = ["park", "mountain", "meadow", "stadium", "street", "garbage_dump", "forest_path", "cemetery", "cup"]
    embeds = embed_texts(components.tokenizer, components.text_encoder, components.text_projection,
                         [attribute_text(a) for a in attributes])
    config = DecompositionConfig(samples=5)
    emotions = ("awe", "sadness")
    table = emotion_decomposition(config, components, mapper, space, embeds, attributes, tmp_path, emotions=emotions)
    for emotion in emotions:
        mapped = mapped_text_embeddings(components, mapper, space, emotion, config).double().numpy()
        keys = embeds.double().numpy()
        cosine = (mapped @ keys.T) / np.outer(np.linalg.norm(mapped, axis=1), np.linalg.norm(keys, axis=1))
        mean = cosine.mean(axis=0)
        top = np.argsort(-mean, kind="stable")[:6]
        assert [name for name, _ in table[emotion]] == [attributes[j] for j in top]
        assert np.allclose([score for _, score in table[emotion]], mean[top])
    saved = json.loads((tmp_path / "decomposition.json").read_text())
    assert [row["attribute"] for row in saved["table"]["awe"]] == [name for name, _ in table["awe"]]
    assert (tmp_path / "decomposition.md").read_text().count("\n") == 2 + len(emotions)
    assert Image.open(tmp_path / "decomposition.png").size[0] > 0


def test_decomposition_table_ranks_by_mean_cosine():
    keys = torch.eye(3)
    mapped = {"awe": torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.0, 0.2]])}
    table = decomposition_table(mapped, keys, ["x", "y", "z"], top_k=2)
    assert [name for name, _ in table["awe"]] == ["x", "y"]


def test_shards_fill_one_folder_with_the_images_of_a_single_run(tmp_path, components, mapper, space):
    whole = generate_submission(SMALL, components, mapper, space, tmp_path / "whole")
    config = GenerateConfig(**{**SMALL.__dict__, "batch_size": 1})
    single = generate_submission(config, components, mapper, space, tmp_path / "single")
    first = generate_submission_summary(config, components, mapper, space, tmp_path / "sharded", shard=(0, 3))
    second = generate_submission_summary(config, components, mapper, space, tmp_path / "sharded", shard=(2, 3))
    third = generate_submission_summary(config, components, mapper, space, tmp_path / "sharded", shard=(1, 3))
    assert first.written + second.written + third.written == 16
    assert _files(tmp_path / "sharded") == _files(single)
    for name in _files(single):  # another batch size: the same images up to floating-point rounding
        a = np.asarray(Image.open(whole / name), dtype=np.int16)
        b = np.asarray(Image.open(single / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 2
    with pytest.raises(UsageError, match="shard"):
        generate_submission(config, components, mapper, space, tmp_path / "x", shard=(3, 3))
