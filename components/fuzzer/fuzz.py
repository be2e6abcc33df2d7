"""Send every client mistake to the exported model, as `imgpipe serve` receives it.

Each request first meets serve's own input checks (what an HTTP client would
be answered), then the SavedModel's signature, exactly as exported. A row is
scored against the clean requests of the same signature.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from imgpipe.components.fuzzer import flags, mistakes, scoring
from imgpipe.components.fuzzer.mistakes import REFERENCES, Mistake, Original, Request, catalogue
from imgpipe.contract import OUTPUTS, SIGNATURES, ImageSpec


def call_size(spec: ImageSpec) -> int:
    """Requests per signature call: 128 thumbnails (the preset's network answers
    8% more images a second than at 64), 64 larger images (a 224 px backbone's
    activations at 128 would double the fuzzer's memory)."""
    return 128 if spec.height * spec.width <= 64 * 64 else 64


@dataclasses.dataclass
class Row:
    mistake: str
    description: str
    sends: str
    images: int
    serve: str                       # "accepted", or the refusal serve answers with
    signature: str                   # "accepted", or the signature's own error
    verdict: str
    scores: Optional[scoring.Scores] = None
    harm: Optional[scoring.Harm] = None
    flagged_by: List[str] = dataclasses.field(default_factory=list)   # monitor checks raising it
    # What the monitor can see of this mistake in traffic: the served pixels'
    # per-channel means (0..255) and the answers' mean confidence.
    fingerprint: Optional[Dict[str, List[float]]] = None
    accepted_reason: str = ""
    seconds: float = 0.0

    @property
    def blocks(self) -> bool:
        return self.verdict == scoring.SILENT_HARM and not self.accepted_reason

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"blocks": self.blocks}


@dataclasses.dataclass
class Reference:
    """The clean requests of one signature: what every other row is measured against."""
    class_ids: np.ndarray
    correct: np.ndarray
    mean_confidence: float


def serve_refusal(request: Request, spec: ImageSpec) -> Optional[str]:
    """What `imgpipe serve` answers this request with, before the model: None if accepted."""
    from imgpipe.serving import model as served
    try:
        if isinstance(request, bytes):
            served.check_image_bytes(request, served.Limits())
        else:
            served.check_one_image(request, spec.shape)
    except served.InputRejected as rejected:
        return f"HTTP {rejected.status}: {rejected}"
    return None


def _signature_call(model, sends: str, requests: Sequence[Request], size: int) -> np.ndarray:
    """The signature's probabilities for up to `size` requests. A shorter call is
    padded to `size` with copies of its first request (their answers dropped):
    one batch shape per signature, so the CPU kernels prepared for a shape
    (oneDNN's) are reused, not prepared again for every remainder and single request."""
    import tensorflow as tf
    count = len(requests)
    padded = list(requests) + [requests[0]] * (size - count)
    if sends == "bytes":
        arguments = {SIGNATURES.bytes_input: tf.constant(padded, dtype=tf.string)}
        name = SIGNATURES.bytes
    else:
        arguments, name = {SIGNATURES.pixels_input: tf.constant(np.stack(padded))}, SIGNATURES.pixels
    return model.signatures[name](**arguments)[OUTPUTS.probabilities].numpy()[:count]


def _key(request: Request) -> Tuple:
    """Equal for equal requests: the bytes, or an array's dtype, shape and pixels."""
    data = request if isinstance(request, bytes) else np.ascontiguousarray(request).tobytes()
    shape = () if isinstance(request, bytes) else (np.asarray(request).dtype.str, request.shape)
    return shape + (hashlib.blake2b(data, digest_size=16).digest(),)


class Answers:
    """The exported model's probabilities, each distinct request asked once: the
    model answers an input the same way every time, and mistakes can send
    identical requests (Pillow's filters leave an image already at the target
    size as it is; the parity check already sent the original files)."""

    def __init__(self, model, size: int):
        self.model, self.size = model, size   # requests per signature call
        self._known: Dict[str, Dict[Tuple, np.ndarray]] = {"bytes": {}, "pixels": {}}

    def remember(self, sends: str, requests: Sequence[Request], probabilities: np.ndarray) -> None:
        self._known[sends].update(zip(map(_key, requests), probabilities))

    def of(self, sends: str, requests: Sequence[Request]) -> np.ndarray:
        """Probabilities for up to `size` requests."""
        known, keys = self._known[sends], [_key(request) for request in requests]
        new = {key: request for key, request in zip(keys, requests) if key not in known}
        if new:
            self.remember(sends, list(new.values()),
                          _signature_call(self.model, sends, list(new.values()), self.size))
        return np.stack([known[key] for key in keys])


def signature_refusal(answers: Answers, sends: str, request: Request) -> str:
    """The exported signature's own answer to one request (a client calling TF Serving)."""
    try:
        _signature_call(answers.model, sends, [request], answers.size)
    except Exception as error:  # noqa: BLE001 - the error is the finding
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return "accepted"


def _batches(originals: Sequence[Original], size: int) -> List[Sequence[Original]]:
    return [originals[start:start + size] for start in range(0, len(originals), size)]


def _requests(mistake: Mistake, batch: Sequence[Original], spec: ImageSpec
              ) -> Tuple[List[Request], Optional[str]]:
    """A batch's requests as the client builds them, and serve's refusal of the first refused."""
    requests = [mistake.request(original, spec) for original in batch]
    return requests, next(filter(None, (serve_refusal(request, spec) for request in requests)), None)


def probabilities_of(answers: Answers, mistake: Mistake, originals: Sequence[Original],
                     spec: ImageSpec, keep: int = 0
                     ) -> Tuple[Optional[str], Optional[np.ndarray], List[Request]]:
    """(serve's refusal of the first refused request, the model's probabilities
    for all requests, the first `keep` requests); the probabilities are None
    when serve refuses any."""
    outputs, kept = [], []
    for batch in _batches(originals, answers.size):
        requests, refusal = _requests(mistake, batch, spec)
        if refusal:
            return refusal, None, []
        kept += requests[:max(0, keep - len(kept))]
        outputs.append(answers.of(mistake.sends, requests))
    return None, np.concatenate(outputs), kept


def served_pixels(requests: Sequence[Request], spec: ImageSpec) -> np.ndarray:
    """uint8 [n, h, w, c] as the graph receives them (bytes decoded by the contract's ops)."""
    import tensorflow as tf

    from imgpipe.contract import image_ops
    encoded = [r for r in requests if isinstance(r, bytes)]
    if encoded:   # the compiled decoder: run eagerly, its map_fn costs ~5 ms an image
        return image_ops.make_batch_decoder(spec)(tf.constant(encoded))[0].numpy()
    return np.stack([np.asarray(r) for r in requests])


def fingerprint(requests: Sequence[Request], spec: ImageSpec, probabilities: np.ndarray) -> dict:
    pixels = served_pixels(requests, spec).astype(np.float64)
    return {"channel_means": [float(v) for v in pixels.mean(axis=(0, 1, 2))],
            "mean_confidence": [float(probabilities.max(axis=1).mean())]}


def screened_probabilities(answers: Answers, mistake: Mistake, originals: Sequence[Original],
                           labels: np.ndarray, spec: ImageSpec, class_names: Sequence[str],
                           clean: Dict[str, Reference], policy: scoring.Policy, keep: int,
                           rows: int = 1):
    """probabilities_of, on the first `policy.screen` inputs when they show no
    hint of harm or harm beyond doubt already, else on the whole sample. The
    clean references always use it all."""
    size = len(originals)
    screen = policy.screen if 0 < policy.screen < size and mistake.sends in clean else size
    refusal, probabilities, kept = probabilities_of(answers, mistake, originals[:screen], spec, keep)
    if probabilities is None or screen == size:
        return refusal, probabilities, kept
    clean_correct = clean[mistake.sends].correct[:screen]
    correct = probabilities.argmax(axis=1) == labels[:screen]
    if not scoring.worth_a_closer_look(clean_correct, correct, labels[:screen], class_names):
        return refusal, probabilities, kept
    early = scoring.harm(clean_correct, correct, labels[:screen], class_names, policy,
                         alpha=scoring.alphas(policy, size)[0], rows=rows)
    if early.harmful:
        return refusal, probabilities, kept
    refusal, rest, _ = probabilities_of(answers, mistake, originals[screen:], spec, 0)
    return refusal, None if rest is None else np.concatenate([probabilities, rest]), kept


def fuzz_row(answers: Answers, mistake: Mistake, originals: Sequence[Original], labels: np.ndarray,
             spec: ImageSpec, class_names: Sequence[str], clean: Dict[str, Reference],
             policy: scoring.Policy, checks: Optional[flags.MonitorChecks] = None,
             rows: int = 1) -> Row:
    """One mistake's row; `rows` mistakes are tested in all (the family its
    significance is corrected for)."""
    started = time.perf_counter()
    refusal, probabilities, kept = screened_probabilities(
        answers, mistake, originals, labels, spec, class_names, clean, policy,
        checks.sample if checks else 200, rows)
    used = len(originals) if probabilities is None else len(probabilities)
    row = Row(mistake.name, mistake.description, mistake.sends, used,
              serve=refusal or "accepted",
              # Where serve accepted, the signature answered every request already.
              signature="accepted" if probabilities is not None else
              signature_refusal(answers, mistake.sends, mistake.request(originals[0], spec)),
              verdict=scoring.REFUSED, accepted_reason=policy.accepted.get(mistake.name, ""))
    if probabilities is not None:
        class_ids, labels = probabilities.argmax(axis=1), labels[:used]
        reference = clean.setdefault(mistake.sends, Reference(
            class_ids, class_ids == labels, float(probabilities.max(axis=1).mean())))
        row.scores = scoring.score(probabilities, labels, reference.class_ids[:used], class_names)
        row.harm = scoring.harm(reference.correct[:used], class_ids == labels, labels, class_names,
                                policy, alpha=scoring.alphas(policy, len(originals))[1], rows=rows)
        if row.harm.harmful:   # would production notice? (a harmless mistake needs no alarm)
            row.flagged_by = flags.raised(kept, probabilities, class_names, spec, checks,
                                          reference.mean_confidence)
        row.fingerprint = fingerprint(kept or [mistake.request(originals[0], spec)], spec, probabilities)
        row.verdict = (scoring.REFERENCE if mistake.name == REFERENCES[mistake.sends]
                       else scoring.verdict(None, row.flagged_by, row.harm))
    row.seconds = time.perf_counter() - started
    return row


def run(model, originals: Sequence[Original], labels: np.ndarray, spec: ImageSpec,
        class_names: Sequence[str], policy: scoring.Policy,
        mistakes: Optional[List[Mistake]] = None, progress=None,
        checks: Optional[flags.MonitorChecks] = None,
        answered: Optional[Dict[str, np.ndarray]] = None) -> List[Row]:
    """Every applicable mistake (files-only ones need files), after the clean references.
    `answered`: {"bytes" | "pixels": the signature's probabilities for the
    originals sent as they are} where already computed (the gate's parity check)."""
    has_files = all(original.encoded is not None for original in originals)
    applicable = [m for m in (mistakes or catalogue()) if has_files or not m.needs_file]
    references = [m for m in catalogue() if m.name in REFERENCES.values() and (has_files or not m.needs_file)]
    chosen = references + [m for m in applicable if m.name not in REFERENCES.values()]
    clean: Dict[str, Reference] = {}
    # A sample smaller than a call (41 evaluation photos) is one call, not padded.
    answers = Answers(model, min(call_size(spec), max(1, len(originals))))
    sent_as_they_are = {m.sends: m for m in references}
    for sends, probabilities in (answered or {}).items():
        if sends in sent_as_they_are:
            answers.remember(sends, [sent_as_they_are[sends].request(o, spec) for o in originals],
                             probabilities)
    rows, tested = [], len(chosen) - len(references)
    for index, mistake in enumerate(chosen, start=1):
        rows.append(fuzz_row(answers, mistake, originals, labels, spec, class_names, clean, policy,
                             checks, tested))
        if progress:
            progress(f"fuzz {index}/{len(chosen)}: {mistake.name}: {rows[-1].verdict}")
    return rows


def sample_indices(count: int, sample: int, seed: int = 0) -> np.ndarray:
    """Which of `count` evaluation inputs the fuzzer sends, in its order: a seeded
    random order, not the files', so any prefix (the screen) is a random sample too."""
    return np.random.default_rng(seed).permutation(count)[:sample]


def originals_of(inputs, spec: ImageSpec, sample: int, seed: int = 0) -> Tuple[List[Original], np.ndarray]:
    """Up to `sample` evaluation inputs (sample_indices) and their labels: the
    files' bytes with the pixels the contract prepares from them, or the
    array source's uint8 pixels. `inputs` is the parity check's ServingInputs."""
    import tensorflow as tf

    from imgpipe.contract import image_ops
    chosen = sample_indices(len(inputs.labels), sample, seed)
    if inputs.files:
        encoded = [tf.io.gfile.GFile(inputs.files[i], "rb").read() for i in chosen]
        decoder = image_ops.make_batch_decoder(spec)
        pixels = np.concatenate([decoder(tf.constant(part))[0].numpy()
                                 for part in _batches(encoded, call_size(spec))])
        originals = [Original(data, image) for data, image in zip(encoded, pixels)]
        return mistakes.with_decoded(originals), inputs.labels[chosen]
    arrays = np.concatenate([batch[SIGNATURES.pixels_input].numpy() for batch in inputs.served_batches()])
    return [Original(None, arrays[i]) for i in chosen], inputs.labels[chosen]
