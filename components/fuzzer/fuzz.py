"""Send every client mistake to the exported model, as `imgpipe serve` receives it.

Each request first meets serve's own input checks (what an HTTP client would
be answered), then the SavedModel's signature, exactly as exported. A row is
scored against the clean requests of the same signature.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from imgpipe.components.fuzzer import flags, mistakes, scoring
from imgpipe.components.fuzzer.budget import MIN_INPUTS, Budget, Pace, is_thumbnail
from imgpipe.components.fuzzer.mistakes import REFERENCES, Mistake, Original, Request, catalogue
from imgpipe.contract import OUTPUTS, SIGNATURES, ImageSpec


def call_size(spec: ImageSpec) -> int:
    """Requests per signature call: 128 thumbnails (the preset's network answers
    8% more images a second than at 64), 64 larger images (a 224 px backbone's
    activations at 128 would double the fuzzer's memory)."""
    return 128 if is_thumbnail(spec) else 64


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
    """The clean requests of one signature on the sample's first inputs: what
    every other row is measured against."""
    probabilities: np.ndarray
    labels: np.ndarray

    @property
    def class_ids(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.class_ids == self.labels

    @property
    def mean_confidence(self) -> float:
        return float(self.probabilities.max(axis=1).mean())


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
    """The signature's probabilities for up to `size` requests. A call of at
    least half of `size` is padded to `size` with copies of its first request
    (their answers dropped): one batch shape per signature for a sample's
    remainders, so the CPU kernels prepared for a shape (oneDNN's) are reused.
    A much shorter call (a row paced to ten photos, one request to see whether
    the signature takes it) is sent as it is: padding would cost more."""
    import tensorflow as tf
    count = len(requests)
    padded = list(requests) + [requests[0]] * ((size - count) if 2 * count >= size else 0)
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
        self.asked = 0                        # requests sent to the model so far

    def remember(self, sends: str, requests: Sequence[Request], probabilities: np.ndarray) -> None:
        self._known[sends].update(zip(map(_key, requests), probabilities))

    def of(self, sends: str, requests: Sequence[Request]) -> np.ndarray:
        """Probabilities for up to `size` requests."""
        known, keys = self._known[sends], [_key(request) for request in requests]
        new = {key: request for key, request in zip(keys, requests) if key not in known}
        if new:
            self.asked += len(new)
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


def contract_pixels(encoded: Sequence[bytes], spec: ImageSpec) -> np.ndarray:
    """uint8 [n, h, w, c]: the files decoded and prepared by the contract's ops,
    compiled once a process: the batch decoder the monitor's skew check also
    runs (one trace, ~0.4 s, in the clean reference, which sets no input's cost)."""
    import tensorflow as tf

    from imgpipe.contract import image_ops
    return image_ops.make_batch_decoder(spec)(tf.constant(list(encoded)))[0].numpy()


def served_pixels(requests: Sequence[Request], spec: ImageSpec) -> np.ndarray:
    """uint8 [n, h, w, c] as the graph receives them (bytes decoded by the contract's ops)."""
    encoded = [r for r in requests if isinstance(r, bytes)]
    if encoded:
        return contract_pixels(encoded, spec)
    return np.stack([np.asarray(r) for r in requests])


def fingerprint(requests: Sequence[Request], spec: ImageSpec, probabilities: np.ndarray) -> dict:
    return fingerprint_of(served_pixels(requests, spec), probabilities)


def fingerprint_of(pixels: np.ndarray, probabilities: np.ndarray) -> dict:
    """What the monitor compares traffic with: uint8 pixels' channel means
    (summed in float64, not copied into it) and the answers' mean confidence."""
    return {"channel_means": [float(v) for v in pixels.mean(axis=(0, 1, 2), dtype=np.float64)],
            "mean_confidence": [float(probabilities.max(axis=1).mean())]}


class References:
    """The clean reference of each signature, on as many of the sample's first
    inputs as the rows so far used; extended when a row goes further."""

    def __init__(self, answers: Answers, originals: Sequence[Original], labels: np.ndarray,
                 spec: ImageSpec):
        self.answers, self.originals, self.labels, self.spec = answers, originals, labels, spec
        self._known: Dict[str, np.ndarray] = {}

    def __contains__(self, sends: str) -> bool:
        return sends in self._known

    def set(self, sends: str, probabilities: np.ndarray) -> None:
        self._known[sends] = probabilities

    def size(self, sends: str) -> int:
        return len(self._known[sends])

    def of(self, sends: str, count: int) -> Reference:
        """The reference on the first `count` inputs."""
        known = self._known[sends]
        if len(known) < count:
            clean = mistakes.by_name()[REFERENCES[sends]]
            _, more, _ = probabilities_of(self.answers, clean, self.originals[len(known):count],
                                          self.spec)
            known = self._known[sends] = np.concatenate([known, more])
        return Reference(known[:count], self.labels[:count])


@dataclasses.dataclass
class Look:
    """What one mistake has sent so far, on the sample's first `have` inputs."""
    mistake: Mistake
    target: int                                # inputs it wants before it is judged
    refusal: Optional[str] = None              # serve's answer to the first refused request
    probabilities: Optional[np.ndarray] = None
    kept: List[Request] = dataclasses.field(default_factory=list)   # for the monitor's checks
    screened: bool = False                     # tested early, at its screen (the alpha is split)
    done: bool = False
    hint: float = 1.0                          # the screen's p-value: the smallest goes on first
    seconds: float = 0.0                       # its looks' time (judging it: the row's)
    row: Optional[Row] = None                  # once judged

    @property
    def have(self) -> int:
        return 0 if self.probabilities is None else len(self.probabilities)


@dataclasses.dataclass
class Fuzzing:
    """What every row of one run shares."""
    answers: Answers
    originals: Sequence[Original]
    labels: np.ndarray
    spec: ImageSpec
    class_names: Sequence[str]
    clean: References
    policy: scoring.Policy
    keep: int                                  # requests kept for the monitor's checks
    rows: int                                  # mistakes tested: the significance family


def send(look: Look, run: Fuzzing, upto: int) -> int:
    """Sends the look's requests up to the sample's first `upto` inputs; the new ones asked."""
    asked = run.answers.asked
    refusal, more, kept = probabilities_of(run.answers, look.mistake, run.originals[look.have:upto],
                                           run.spec, run.keep - len(look.kept))
    look.refusal, look.kept = refusal, look.kept + kept
    look.probabilities = None if more is None else (
        more if look.probabilities is None else np.concatenate([look.probabilities, more]))
    look.done = look.done or refusal is not None or look.have == len(run.originals)
    return run.answers.asked - asked


def review(look: Look, run: Fuzzing) -> None:
    """After the first look (the screen, or what the budget gave): a row that
    shows no hint of a drop, or harm beyond doubt already, is done; one with a
    hint wants the whole sample."""
    size = len(run.originals)
    if look.done or look.have == size:
        look.done = True
        return
    labels = run.labels[:look.have]
    clean_correct = run.clean.of(look.mistake.sends, look.have).correct
    correct = look.probabilities.argmax(axis=1) == labels
    look.done = not scoring.worth_a_closer_look(clean_correct, correct, labels, run.class_names)
    if look.done:
        return
    look.screened = True
    early = scoring.harm(clean_correct, correct, labels, run.class_names, run.policy,
                         alpha=scoring.alphas(look.have, size)[0], rows=run.rows)
    look.done, look.target, look.hint = early.harmful, size, min(early.accuracy_p, early.class_p)


def first_look(look: Look, run: Fuzzing, pace: Pace, checks: Optional[flags.MonitorChecks]) -> None:
    """Sends the look's first inputs and judges it when that is all it needs.
    The pace sees every second of it (the judging too: a harmful row runs the
    monitor's checks)."""
    started, is_reference = time.perf_counter(), look.mistake.sends not in run.clean
    wanted = pace.first_look(look.target)
    if wanted == 0 and not is_reference:   # the budget is spent: not sent, and said so
        look.done, look.row = True, untested(look.mistake, run)
        pace.looked(look.mistake.sends, 0, 0.0)
        return
    asked = send(look, run, max(wanted, MIN_INPUTS) if is_reference else wanted)
    if is_reference and look.probabilities is not None:
        run.clean.set(look.mistake.sends, look.probabilities)   # extended as rows need it
        look.done, look.kept = True, []   # judged last, as far as the rows extended it
    review(look, run)
    look.seconds += time.perf_counter() - started
    if look.done and not is_reference:
        look.row = finish(look, run, checks)
    # The references carry one-off costs (tracing the decoder, the signature's
    # first call): they spend the clock but do not set an input's cost.
    pace.looked(look.mistake.sends, 0 if is_reference else asked, time.perf_counter() - started)


def further_looks(looks: List[Look], run: Fuzzing, pace: Pace,
                  checks: Optional[flags.MonitorChecks]) -> None:
    """The time the first looks left, to the rows with a hint of harm, the most
    suggestive first: each once, as far as the time left affords (a row's
    second and last look), then judged."""
    for look in sorted((lk for lk in looks if not lk.done), key=lambda lk: lk.hint):
        started, asked = time.perf_counter(), 0
        upto = pace.more(look.mistake.sends, look.have, look.target)
        if upto > look.have:
            asked = send(look, run, upto)
        look.seconds += time.perf_counter() - started
        look.done, look.row = True, finish(look, run, checks)
        pace.spent(look.mistake.sends, asked, time.perf_counter() - started)


def untested(mistake: Mistake, run: Fuzzing) -> Row:
    """A row the gate's time budget left no time for: no verdict, not blocking."""
    why = (f"not sent: the time budget ran out before {MIN_INPUTS} inputs "
           "(raise fuzz.max_evaluation_share)")
    return Row(mistake.name, mistake.description, mistake.sends, 0, serve=why, signature=why,
               verdict=scoring.UNTESTED, accepted_reason=run.policy.accepted.get(mistake.name, ""))


def finish(look: Look, run: Fuzzing, checks: Optional[flags.MonitorChecks]) -> Row:
    """The row of a look that is done."""
    started, mistake, spec = time.perf_counter(), look.mistake, run.spec
    probabilities, originals = look.probabilities, run.originals
    used = len(originals) if probabilities is None else len(probabilities)
    row = Row(mistake.name, mistake.description, mistake.sends, used,
              serve=look.refusal or "accepted",
              # Where serve accepted, the signature answered every request already.
              signature="accepted" if probabilities is not None else
              signature_refusal(run.answers, mistake.sends, mistake.request(originals[0], spec)),
              verdict=scoring.REFUSED, accepted_reason=run.policy.accepted.get(mistake.name, ""))
    if probabilities is not None:
        is_reference = mistake.name == REFERENCES[mistake.sends]
        if is_reference:   # reported as far as the rows extended it
            used = row.images = run.clean.size(mistake.sends)
        reference = run.clean.of(mistake.sends, used)
        probabilities = reference.probabilities if is_reference else probabilities
        labels = reference.labels
        class_ids = probabilities.argmax(axis=1)
        row.scores = scoring.score(probabilities, labels, reference.class_ids, run.class_names)
        last_alpha = scoring.alphas(1 if look.screened else len(originals), len(originals))[1]
        row.harm = scoring.harm(reference.correct, class_ids == labels, labels, run.class_names,
                                run.policy, alpha=last_alpha, rows=run.rows)
        if row.harm.harmful:   # would production notice? (a harmless mistake needs no alarm)
            row.flagged_by = flags.raised(look.kept, probabilities, run.class_names, spec, checks,
                                          reference.mean_confidence)
        if is_reference:   # the originals as they are: the pixels the contract made of them
            row.fingerprint = fingerprint_of(
                np.stack([o.pixels for o in originals[:min(used, run.keep)]]), probabilities)
        else:
            row.fingerprint = fingerprint(look.kept or [mistake.request(originals[0], spec)], spec,
                                          probabilities)
        row.verdict = (scoring.REFERENCE if is_reference
                       else scoring.verdict(None, row.flagged_by, row.harm))
    row.seconds = look.seconds + time.perf_counter() - started
    look.kept = []   # judged: its requests (a row of 16-bit PNGs: a megabyte a photo) go
    return row


def run(model, originals: Sequence[Original], labels: np.ndarray, spec: ImageSpec,
        class_names: Sequence[str], policy: scoring.Policy,
        mistakes: Optional[List[Mistake]] = None, progress=None,
        checks: Optional[flags.MonitorChecks] = None,
        answered: Optional[Dict[str, np.ndarray]] = None,
        budget: Optional[Budget] = None) -> List[Row]:
    """Every applicable mistake (files-only ones need files), after the clean
    references: each one's first look (its screen), then further looks for
    those that want more. `answered`: {"bytes" | "pixels": the signature's
    probabilities for the originals sent as they are} where already computed
    (the gate's parity check). `budget`: the time the rows may take
    (budget.py); None: as many inputs as each row wants."""
    has_files = isinstance(originals, FileOriginals) or (   # one source kind
        bool(len(originals)) and originals[0].encoded is not None)
    applicable = [m for m in (mistakes or catalogue()) if has_files or not m.needs_file]
    references = [m for m in catalogue() if m.name in REFERENCES.values() and (has_files or not m.needs_file)]
    chosen = references + [m for m in applicable if m.name not in REFERENCES.values()]
    # A sample smaller than a call (41 evaluation photos) is one call, not padded.
    answers = Answers(model, min(call_size(spec), max(1, len(originals))))
    sent_as_they_are = {m.sends: m for m in references}
    for sends, probabilities in (answered or {}).items():
        if sends in sent_as_they_are:
            answers.remember(sends, as_they_are(originals, sent_as_they_are[sends], spec),
                             probabilities)
    shared = Fuzzing(answers, originals, labels, spec, class_names,
                     References(answers, originals, labels, spec), policy,
                     checks.sample if checks else 200, len(chosen) - len(references))
    size, screen, pace = len(originals), policy.screen, Pace(budget, [m.sends for m in chosen])
    looks = [Look(m, screen if 0 < screen < size and m not in references else size) for m in chosen]
    for index, look in enumerate(looks, start=1):
        first_look(look, shared, pace, checks)
        if progress:
            progress(f"fuzz {index}/{len(looks)}: {look.mistake.name}: "
                     + (f"{look.row.verdict} ({look.row.images} inputs)" if look.row else
                        f"{look.have} inputs so far, " + ("more to come" if look.screened else
                                                          "the reference")))
    going_further = [look for look in looks if not look.done]
    further_looks(looks, shared, pace, checks)
    for look in going_further if progress else ():
        progress(f"fuzz: {look.mistake.name}: {look.row.verdict} ({look.row.images} inputs)")
    return [look.row or finish(look, shared, checks) for look in looks]   # the references last


def sample_indices(count: int, sample: int, seed: int = 0) -> np.ndarray:
    """Which of `count` evaluation inputs the fuzzer sends, in its order: a seeded
    random order, not the files', so any prefix (the screen) is a random sample too."""
    return np.random.default_rng(seed).permutation(count)[:sample]


# Files are decoded about this many pixels at a time: 16 photos at 224 px (a
# row paced to ten photos needs no more), 784 thumbnails at 32 px (a compiled
# decoder call costs ~10 ms whatever its size: 16 thumbnails a call cost a
# CIFAR-10 sample 60 calls).
CHUNK_PIXELS = 16 * 224 * 224


class FileOriginals(collections.abc.Sequence):
    """The sample's files as Originals, decoded `chunk` at a time (by default
    CHUNK_PIXELS' worth) when a row first reaches them: a row paced to ten
    photos does not wait for the sample's thousand to be decoded. The files'
    bytes are read at once."""

    def __init__(self, encoded: List[bytes], spec: ImageSpec, chunk: Optional[int] = None):
        chunk = chunk or max(16, CHUNK_PIXELS // (spec.height * spec.width))
        self.encoded, self.spec, self.chunk = encoded, spec, chunk
        self._chunks: Dict[int, List[Original]] = {}
        self._decoded_left = mistakes.DECODED_BUDGET_BYTES   # Pillow decodes kept (with_decoded)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]   # negative indices; IndexError past the end
        which = index // self.chunk
        if which not in self._chunks:
            self._chunks[which] = self._decode(self.encoded[which * self.chunk:(which + 1) * self.chunk])
        return self._chunks[which][index % self.chunk]

    def _decode(self, encoded: List[bytes]) -> List[Original]:
        pixels = contract_pixels(encoded, self.spec)
        kept = mistakes.with_decoded([Original(data, image) for data, image in zip(encoded, pixels)],
                                     self._decoded_left)
        self._decoded_left -= sum(o.decoded.width * o.decoded.height * 3 for o in kept if o.decoded)
        return kept


def as_they_are(originals: Sequence[Original], mistake: Mistake, spec: ImageSpec) -> List[Request]:
    """The originals sent as they are (a reference mistake); files' bytes without decoding them."""
    if mistake.sends == "bytes" and isinstance(originals, FileOriginals):
        return list(originals.encoded)
    return [mistake.request(original, spec) for original in originals]


def originals_of(inputs, spec: ImageSpec, sample: int,
                 seed: int = 0) -> Tuple[Sequence[Original], np.ndarray]:
    """Up to `sample` evaluation inputs (sample_indices) and their labels: the
    files' bytes with the pixels the contract prepares from them (FileOriginals),
    or the array source's uint8 pixels. `inputs` is the parity check's ServingInputs."""
    import tensorflow as tf
    chosen = sample_indices(len(inputs.labels), sample, seed)
    if inputs.files:
        encoded = [tf.io.gfile.GFile(inputs.files[i], "rb").read() for i in chosen]
        return FileOriginals(encoded, spec), inputs.labels[chosen]
    arrays = np.concatenate([batch[SIGNATURES.pixels_input].numpy() for batch in inputs.served_batches()])
    return [Original(None, arrays[i]) for i in chosen], inputs.labels[chosen]
