"""The mistake catalogue, the scoring and the verdicts, without a pipeline."""
import io
import re
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from imgpipe.components.fuzzer import budget, fuzz, mistakes, report, scoring
from imgpipe.contract import OUTPUTS, SIGNATURES, ImageSpec, image_ops

SPEC = ImageSpec(16, 16, 3)
CLASSES = ["red", "green", "blue"]


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def _dominant(k: int, seed: int, size=(16, 16)) -> np.ndarray:
    """An image whose channel k dominates (class k of the colour model)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, (*size, 3))
    pixels[..., k] += 150
    return pixels.astype(np.uint8)


def _originals(count=60, size=(16, 16)):
    labels = np.arange(count) % 3
    originals = []
    for i, k in enumerate(labels):
        encoded = _jpeg(_dominant(int(k), i, size))
        pixels = image_ops.decode_and_prepare(tf.constant(encoded), SPEC).numpy()
        originals.append(mistakes.Original(encoded, pixels))
    return originals, labels


class ColourModel(tf.Module):
    """A fragile model, on purpose: the class is the channel with the largest
    mean. Its signatures are the contract's (uint8 pixels; encoded bytes)."""

    def _outputs(self, pixels):
        means = tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[1, 2])
        probabilities = tf.nn.softmax(means / 10.0)
        return {OUTPUTS.probabilities: probabilities, OUTPUTS.class_id: tf.argmax(probabilities, -1)}

    @tf.function(input_signature=[tf.TensorSpec([None, *SPEC.shape], tf.uint8)])
    def pixels(self, images):
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encoded(self, image_bytes):
        return self._outputs(image_ops.decode_and_prepare_batch(image_bytes, SPEC))


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    module = ColourModel()
    path = str(tmp_path_factory.mktemp("colour") / "model")
    tf.saved_model.save(module, path, signatures={
        SIGNATURES.pixels: module.pixels.get_concrete_function(),
        SIGNATURES.bytes: module.encoded.get_concrete_function()})
    return tf.saved_model.load(path)


@pytest.mark.parametrize("mistake", mistakes.catalogue(), ids=lambda m: m.name)
def test_each_mistake_builds_the_request_a_client_would_send(mistake):
    originals, _ = _originals(3, size=(24, 20))
    request = mistake.request(originals[0], SPEC)
    if mistake.sends == "bytes":
        assert isinstance(request, bytes) and Image.open(io.BytesIO(request)).size in ((24, 20), (20, 24))
    else:
        assert isinstance(request, np.ndarray) and request.size > 0


def test_the_pixel_mistakes_are_what_their_names_say():
    original = _originals(1)[0][0]
    by = mistakes.by_name()
    assert np.array_equal(by["BGR"].request(original, SPEC), original.pixels[..., ::-1])
    assert by["float [0, 1] (float64)"].request(original, SPEC).dtype == np.float64
    assert by["channels first"].request(original, SPEC).shape == (3, 16, 16)
    assert set(np.unique(by["integers 0/1"].request(original, SPEC))) <= {0, 1}
    assert by["RGBA array"].request(original, SPEC).shape == (16, 16, 4)


def test_a_phone_jpeg_is_upright_through_the_contract_only_with_its_exif_tag():
    original = _originals(1, size=(24, 16))[0][0]                # 24 high, 16 wide
    apply = ImageSpec(24, 16, 3, exif_orientation="apply")
    upright = image_ops.decode_and_prepare(tf.constant(original.encoded), apply).numpy().astype(float)
    tagged = mistakes.by_name()["EXIF-tagged phone JPEG"].request(original, apply)
    stripped = mistakes.by_name()["EXIF stripped"].request(original, apply)
    assert Image.open(io.BytesIO(tagged)).getexif()[mistakes.EXIF_ORIENTATION_TAG] == 6
    assert Image.open(io.BytesIO(tagged)).size == (24, 16)            # stored turned: 24 wide
    from_tagged = image_ops.decode_and_prepare(tf.constant(tagged), apply).numpy().astype(float)
    from_stripped = image_ops.decode_and_prepare(tf.constant(stripped), apply).numpy().astype(float)
    assert np.abs(from_tagged - upright).mean() < 6              # JPEG re-encoding only
    assert np.abs(from_stripped - upright).mean() > 3 * np.abs(from_tagged - upright).mean()


def test_calibration_error_of_a_known_case():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # Bin 0.9: accuracy 0.5, confidence 0.9; bin 0.6: accuracy 1.0, confidence 0.6.
    assert scoring.expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_a_drop_that_noise_explains_is_not_harm_a_significant_one_is():
    labels = np.repeat([0, 1], 100)
    clean = np.ones(200, bool)
    policy = scoring.Policy(max_accuracy_drop=0.02, max_class_recall_drop=0.05)
    few = clean.copy()
    few[[0, 1, 2, 3, 4, 5]] = False         # class 0 recall -6 points: 6 lost, 0 gained
    assert scoring.harm(clean, few, labels, ["a", "b"], policy).harmful
    noisy = clean.copy()
    clean_noisy = clean.copy()
    noisy[:6] = False
    clean_noisy[6:12] = False                # 6 lost, 6 gained: no change beyond chance
    found = scoring.harm(clean_noisy, noisy, labels, ["a", "b"], policy)
    assert not found.harmful and found.accuracy_drop == 0
    small = clean.copy()
    small[:2] = False                        # 2 points: within the threshold
    assert not scoring.harm(clean, small, labels, ["a", "b"], policy).harmful


def test_a_class_drop_is_tested_against_every_class_it_could_have_been():
    # Ten classes of 100: 6 of one class lost (p = 1/64) is what chance shows in
    # one of ten classes too often; 9 lost (p = 1/512) is beyond it.
    labels = np.repeat(np.arange(10), 100)
    names = [str(k) for k in range(10)]
    clean = np.ones(1000, bool)
    policy = scoring.Policy(max_accuracy_drop=0.02, max_class_recall_drop=0.05)
    six, nine = clean.copy(), clean.copy()
    six[:6] = False
    nine[:9] = False
    assert not scoring.harm(clean, six, labels, names, policy).harmful
    found = scoring.harm(clean, nine, labels, names, policy)
    assert found.harmful and found.worst_class == "0" and found.class_drop == pytest.approx(0.09)


def test_a_drop_is_tested_against_every_row_it_could_have_been():
    # Five of 140 lost, none gained (p = 1/32): significant for one mistake,
    # what chance shows in one of 27 mistakes too often; 10 lost (p = 1/1024) is beyond it.
    labels = np.repeat(np.arange(4), 35)
    names = ["a", "b", "c", "d"]
    clean = np.ones(140, bool)
    policy = scoring.Policy(max_accuracy_drop=0.02, max_class_recall_drop=0.5)
    five, ten = clean.copy(), clean.copy()
    five[::28] = False
    ten[::14] = False
    assert scoring.harm(clean, five, labels, names, policy).harmful
    assert not scoring.harm(clean, five, labels, names, policy, rows=27).harmful
    assert scoring.harm(clean, ten, labels, names, policy, rows=27).harmful


def test_the_confidence_floor_flags_a_mistake_only_when_clean_traffic_clears_it():
    from imgpipe.components.fuzzer import flags
    checks = flags.MonitorChecks(min_mean_confidence=0.7)
    unsure = np.full((20, 2), 0.5)                        # mean confidence 0.5 < 0.7
    spec = ImageSpec(4, 4, 3)
    found = flags.raised([], unsure, ["a", "b"], spec, checks, clean_confidence=0.9)
    assert len(found) == 1 and found[0].startswith("monitor confidence:")
    # Clean traffic at 0.65 already rings the alarm: it says nothing about this mistake.
    assert flags.raised([], unsure, ["a", "b"], spec, checks, clean_confidence=0.65) == []


def test_a_fragile_model_has_silent_harm_rows_and_an_accepted_one_does_not_block(colour_model):
    originals, labels = _originals()
    policy = scoring.Policy(accepted={"grey replicated": "grey is rare"})
    rows = {row.mistake: row
            for row in fuzz.run(colour_model, originals, labels, SPEC, CLASSES, policy)}
    assert rows["clean pixels"].verdict == rows["clean bytes"].verdict == scoring.REFERENCE
    assert rows["clean pixels"].scores.accuracy == 1.0
    bgr = rows["BGR"]
    assert bgr.verdict == scoring.SILENT_HARM and bgr.blocks
    assert bgr.scores.accuracy == pytest.approx(1 / 3) and bgr.scores.flip_rate == pytest.approx(2 / 3)
    assert bgr.harm.worst_class in ("red", "blue") and bgr.harm.class_drop == 1.0
    assert rows["grey replicated"].verdict == scoring.SILENT_HARM and not rows["grey replicated"].blocks
    for refused in ("float [0, 1] (float32)", "integers 0/1", "channels first", "RGBA array"):
        assert rows[refused].verdict == scoring.REFUSED and rows[refused].serve.startswith("HTTP 422")
    assert rows["float [0, 1] (float32)"].signature != "accepted"   # the signature's dtype too
    assert rows["JPEG quality 75"].verdict == scoring.HARMLESS
    failures = report.failures(rows.values())
    assert len(failures) == sum(row.blocks for row in rows.values())
    assert any(f.startswith("fuzz: BGR (channels reversed (an OpenCV client)) is accepted silently "
                            "and costs 66.7 accuracy points") for f in failures)
    assert not any("grey replicated" in f for f in failures)
    table = report.format_table(list(rows.values()))
    assert "accepted: grey is rare" in table and "HTTP 422: instance: got float32" in table


def _some_bgr(original: mistakes.Original, _spec: ImageSpec) -> np.ndarray:
    """BGR for about one image in three (a milder harm: the colour model loses
    the red and blue ones of those, ~2/9 of its answers)."""
    if int(original.pixels.sum()) % 3:
        return original.pixels
    return np.ascontiguousarray(original.pixels[..., ::-1])


def test_the_screen_stops_a_row_without_a_hint_of_harm_or_with_harm_beyond_doubt(colour_model):
    originals, labels = _originals(120)
    mild = mistakes.Mistake("some BGR", "one client in three sends BGR", "pixels", _some_bgr)
    chosen = [m for m in mistakes.catalogue() if m.name in ("BGR", "horizontal flip", "JPEG quality 75")]
    rows = {row.mistake: row for row in fuzz.run(colour_model, originals, labels, SPEC, CLASSES,
                                                 scoring.Policy(screen=30), [*chosen, mild])}
    assert rows["clean pixels"].images == rows["clean bytes"].images == 120
    assert rows["horizontal flip"].images == 30 and rows["horizontal flip"].verdict == scoring.HARMLESS
    assert rows["JPEG quality 75"].images == 30
    # BGR loses every answer: proven on the screen's 30 (at a tenth of the row's alpha).
    assert rows["BGR"].images == 30 and rows["BGR"].verdict == scoring.SILENT_HARM
    # A fifth lost: suggestive on 30, not beyond doubt; harmful on all 120.
    assert rows["some BGR"].images == 120 and rows["some BGR"].verdict == scoring.SILENT_HARM


def test_the_two_looks_share_the_rows_alpha():
    assert scoring.alphas(1000, 1000) == (0.0, 0.05)   # the whole sample at once: one look
    early, final = scoring.alphas(250, 1000)
    assert early + final == pytest.approx(0.05) and early < final


def test_a_reference_extended_for_a_row_that_goes_further_is_the_reference_on_all_of_it(
        colour_model):
    originals, labels = _originals(40)
    answers = fuzz.Answers(colour_model, 16)
    clean = mistakes.by_name()["clean pixels"]
    _, first, _ = fuzz.probabilities_of(answers, clean, originals[:10], SPEC)
    references = fuzz.References(answers, originals, labels, SPEC)
    references.set("pixels", first)
    extended = references.of("pixels", 40)
    whole = fuzz.probabilities_of(fuzz.Answers(colour_model, 16), clean, originals, SPEC)[1]
    assert np.allclose(extended.probabilities, whole) and references.size("pixels") == 40
    assert np.array_equal(extended.correct, whole.argmax(axis=1) == labels)
    assert len(references.of("pixels", 25).class_ids) == 25


def test_rows_the_time_budget_cannot_pay_for_are_untested_and_said_so(colour_model):
    originals, labels = _originals(60)
    rows = fuzz.run(colour_model, originals, labels, SPEC, CLASSES, scoring.Policy(screen=30),
                    budget=budget.Budget(seconds=0.0, seconds_per_input=0.01))
    by_name = {row.mistake: row for row in rows}
    assert by_name["clean pixels"].images == budget.MIN_INPUTS   # the reference: its floor
    others = [row for row in rows if row.verdict != scoring.REFERENCE]
    assert others and {row.verdict for row in others} == {scoring.UNTESTED}
    assert not any(row.blocks for row in others) and not report.failures(rows)
    assert all(row.images == 0 and "time budget ran out" in row.serve for row in others)
    table = report.format_table(rows, budget.Budget(0.0, 0.01, 12.0, 0.25), 1.5)
    assert (f"time budget 0.25 x 12.0 s of evaluation = 0.0 s, used 1.5 s; {len(others)} "
            "untested, no time left for them") in table
    assert re.search(r"\nBGR +pixels +UNTESTED +not sent: the time budget ran out", table)


def test_every_row_a_budget_pays_for_gets_at_least_the_inputs_that_can_show_harm(colour_model):
    originals, labels = _originals(60)
    rows = fuzz.run(colour_model, originals, labels, SPEC, CLASSES, scoring.Policy(screen=30),
                    budget=budget.Budget(seconds=60.0, seconds_per_input=1.0))   # a slow estimate
    tested = [row for row in rows if row.scores is not None]
    assert len(tested) > 2 and min(row.images for row in tested) >= budget.MIN_INPUTS
    assert not [row for row in rows if row.verdict == scoring.UNTESTED]   # 60 s was plenty


def test_rows_built_from_kept_decodes_send_what_fresh_decodes_send():
    # The kept Pillow image is shared by every row: none may change it (a save's
    # options, a conversion) for the rows after it.
    originals, _ = _originals(6)
    kept = mistakes.with_decoded(originals)
    assert all(original.decoded is not None for original in kept)
    assert mistakes.with_decoded(originals, budget=2 * 16 * 16 * 3)[2].decoded is None
    for mistake in mistakes.catalogue():
        if mistake.needs_file:
            for fresh, reused in zip(originals, kept):
                sent, again = mistake.request(fresh, SPEC), mistake.request(reused, SPEC)
                assert type(sent) is type(again)
                assert (sent == again) if isinstance(sent, bytes) else np.array_equal(sent, again), \
                    mistake.name


def test_the_sample_comes_in_a_random_order_so_its_screen_is_a_random_sample_too(tmp_path):
    # Files in class order (as a folder listing gives them): the first 30 drawn still mix classes.
    files, labels = [], np.repeat(np.arange(3), 40)
    for i, k in enumerate(labels):
        path = tmp_path / f"{i:03d}.jpg"
        path.write_bytes(_jpeg(_dominant(int(k), i)))
        files.append(str(path))
    inputs = types.SimpleNamespace(labels=labels, files=files)
    originals, drawn = fuzz.originals_of(inputs, SPEC, sample=90)
    assert len(originals) == 90 and set(drawn[:30]) == {0, 1, 2}
    again, same = fuzz.originals_of(inputs, SPEC, sample=90)
    assert list(same) == list(drawn) and again[0].encoded == originals[0].encoded   # seeded


def test_files_are_decoded_a_chunk_at_a_time_when_a_row_first_reaches_them(tmp_path):
    encoded = [_jpeg(_dominant(i % 3, i)) for i in range(300)]
    originals = fuzz.FileOriginals(encoded, SPEC, chunk=16)
    first = originals[:10]
    assert list(originals._chunks) == [0]                  # nothing past the first chunk decoded
    assert originals[-1].encoded == encoded[-1] and sorted(originals._chunks) == [0, 18]
    # Chunk by chunk, the pixels of the whole batch through serving_bytes' ops.
    compiled = image_ops.decode_and_prepare_batch(tf.constant(encoded), SPEC).numpy()
    for index in (*range(10), 40, 299):
        assert np.array_equal(originals[index].pixels, compiled[index]), index
        assert originals[index].decoded is not None        # Pillow's decode kept for the rows
    assert len(first) == 10 and first[3].encoded == encoded[3]
    with pytest.raises(IndexError):
        originals[300]
    # By default about 16 photos' pixels a chunk: most of a thumbnail sample at once.
    assert fuzz.FileOriginals(encoded, ImageSpec(224, 224, 3)).chunk == 16
    assert fuzz.FileOriginals(encoded, ImageSpec(32, 32, 3)).chunk == 784


def test_the_screen_looks_closer_at_any_suggestive_drop():
    labels = np.repeat([0, 1], 50)
    clean = np.ones(100, bool)
    some = clean.copy()
    some[:3] = False                               # 3 of class 0 lost, none gained: p = 1/8
    assert scoring.worth_a_closer_look(clean, some, labels, ["a", "b"])
    clean_mixed, mixed = clean.copy(), clean.copy()
    clean_mixed[:3], mixed[3:6] = False, False     # within class 0, 3 lost and 3 gained
    assert not scoring.worth_a_closer_look(clean_mixed, mixed, labels, ["a", "b"])
    assert not scoring.worth_a_closer_look(clean, clean, labels, ["a", "b"])


def test_array_sources_skip_the_rows_that_need_a_file(colour_model):
    originals, labels = _originals(9)
    arrays = [mistakes.Original(None, original.pixels) for original in originals]
    rows = fuzz.run(colour_model, arrays, labels, SPEC, CLASSES, scoring.Policy())
    assert {row.sends for row in rows} == {"pixels"}
    assert not any(row.mistake.startswith(("PIL", "JPEG", "centre")) for row in rows)


def test_each_distinct_request_is_asked_once_and_known_answers_are_not_asked_again(
        colour_model, monkeypatch):
    """Identical requests (Pillow's filters leave an image at the target size as
    it is) are answered once; the parity check's answers for the original files
    are the clean bytes reference, not asked again. Same rows either way; a
    wrong answer given there shows in the row."""
    originals, labels = _originals(70)
    asked, call = {"bytes": 0, "pixels": 0}, fuzz._signature_call

    def counted(model, sends, requests, size):
        asked[sends] += len(requests)
        return call(model, sends, requests, size)

    monkeypatch.setattr(fuzz, "_signature_call", counted)
    plain = fuzz.run(colour_model, originals, labels, SPEC, CLASSES, scoring.Policy())
    first = dict(asked)
    sent = {sends: sum(row.images for row in plain if row.sends == sends and row.scores is not None)
            for sends in first}
    pil_rows = [row for row in plain if row.mistake.startswith("PIL")]
    assert len(pil_rows) == 6 and len({row.scores.accuracy for row in pil_rows}) == 1
    assert first["pixels"] <= sent["pixels"] - 5 * 70         # five of the six PIL rows: known
    answers = colour_model.encoded(tf.constant([o.encoded for o in originals]))[OUTPUTS.probabilities]
    given = fuzz.run(colour_model, originals, labels, SPEC, CLASSES, scoring.Policy(),
                     answered={"bytes": answers.numpy()})
    assert [r.as_dict() | {"seconds": 0} for r in given] == [r.as_dict() | {"seconds": 0} for r in plain]
    assert asked["bytes"] - first["bytes"] == first["bytes"] - 70    # the clean bytes: not asked
    wrong = np.roll(answers.numpy(), 1, axis=1)                        # every answer another class
    shifted = fuzz.run(colour_model, originals, labels, SPEC, CLASSES, scoring.Policy(),
                       answered={"bytes": wrong})
    assert shifted[[row.mistake for row in shifted].index("clean bytes")].scores.accuracy < 0.1
