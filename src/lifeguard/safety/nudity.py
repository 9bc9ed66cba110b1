"""Nudity warnings for child accounts: a detector behind an interface, and the warning flow.

* :class:`NudityDetector` — the interface: ``detect(pixels) -> list[Detection]``. Any model can
  stand behind it (pass your own to :func:`check_image` / :func:`create_verdict`).
* :class:`NudeNetDetector` — the default: NudeNet 3.x's YOLOv8 ``320n.onnx`` model, which ships
  inside the ``nudenet`` wheel, run directly with onnxruntime. NudeNet's own Python wrapper is not
  imported (it needs OpenCV); the pre- and post-processing are done here with Pillow and NumPy,
  following the wrapper (pad to a square at the bottom/right, 320x320, RGB/255, class-agnostic
  NMS). Nothing is downloaded at run time. Install with the ``nudity`` extra.
* :func:`decide` — the policy: detections + account type -> ``blur | warn | allow``, and for a
  child account the whole flow (warning text, help resources, block and report).
* :func:`check_image` — bytes in, :class:`NudityVerdict` out; for the client toolkit (the check runs
  where it is called: on a device, nothing leaves it).

The image is decoded by lifeguard's safe decoder (:func:`lifeguard.signals.image.decode_image`:
size limits, corrupt input -> :class:`~lifeguard.errors.MediaError`). Nothing is kept: neither the
image nor the verdict is stored here.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lifeguard.errors import LifeguardError, MediaError
from lifeguard.settings import Settings
from lifeguard.signals.image import DecodedImage, decode_image

Action = Literal["blur", "warn", "allow"]
Account = Literal["child", "adult"]
RGBArray = npt.NDArray[np.uint8]

#: NudeNet 3.x class names, in the model's output order (also in the model's metadata).
NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

#: Labels that count as nudity for the policy. Everything else (faces, feet, belly, armpits,
#: covered parts, a bare male chest) never triggers a warning on its own.
EXPLICIT_LABELS: frozenset[str] = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)


class NudityUnavailable(LifeguardError):
    """The detector cannot run here (the ``nudity`` extra is not installed, or the model is
    missing). 503 over HTTP."""

    code = "nudity_detector_unavailable"


# ------------------------------------------------------------------------------ the interface
@dataclass(frozen=True, slots=True)
class Detection:
    """One region the model found. ``box`` is ``(x, y, width, height)`` in pixels of the image as
    decoded (EXIF orientation applied; a big JPEG may be decoded at reduced scale)."""

    label: str
    score: float
    box: tuple[int, int, int, int]

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 4), "box": list(self.box)}


@runtime_checkable
class NudityDetector(Protocol):
    """What a nudity model must offer. ``pixels`` is an RGB ``uint8`` array ``(H, W, 3)``."""

    @property
    def name(self) -> str: ...

    def detect(self, pixels: RGBArray) -> list[Detection]: ...


# ------------------------------------------------------------------------------ NudeNet adapter
def nudenet_model_path() -> Path:
    """The ``320n.onnx`` file inside the installed ``nudenet`` package (found without importing
    the package, whose ``__init__`` imports OpenCV)."""
    spec = importlib.util.find_spec("nudenet")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / "320n.onnx"
        if p.is_file():
            return p
    raise NudityUnavailable(
        "the NudeNet model (nudenet/320n.onnx) is not installed: pip install 'lifeguard[nudity]'"
    )


def _nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> list[int]:
    """Greedy non-maximum suppression over ``(x, y, w, h)`` boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = np.maximum(boxes[:, 2], 0) * np.maximum(boxes[:, 3], 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        ratio = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
        order = rest[ratio <= iou]
    return keep


class NudeNetDetector:
    """NudeNet 3.x (``320n.onnx``, YOLOv8n, 18 classes) run with onnxruntime on the CPU.

    ``min_score``: detections below it are dropped (NudeNet's wrapper uses 0.25). ``threads``: the
    onnxruntime intra-op threads (0: onnxruntime decides). Thread-safe: onnxruntime sessions
    may run concurrently.
    """

    name = "nudenet-3.4-320n"
    size = 320

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        min_score: float = 0.25,
        iou: float = 0.45,
        threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise NudityUnavailable(
                "onnxruntime is not installed: pip install 'lifeguard[nudity]'"
            ) from None
        path = model_path or nudenet_model_path()
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session: Any = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # a missing or corrupt model file
            raise NudityUnavailable(f"cannot load the nudity model {path}: {e}") from None
        outputs = self._session.get_outputs()
        self._input = self._session.get_inputs()[0].name
        self._output = outputs[0].name
        self.min_score = min_score
        self.iou = iou
        self.model_path = path
        meta = self._session.get_modelmeta().custom_metadata_map
        self.model_license: str = meta.get("license", "")

    def preprocess(self, pixels: RGBArray) -> tuple[npt.NDArray[np.float32], float]:
        """``(1, 3, 320, 320)`` float32 input and the factor from model to image pixels."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise MediaError(f"expected RGB uint8 pixels, got {pixels.shape} {pixels.dtype}")
        h, w = int(pixels.shape[0]), int(pixels.shape[1])
        side = max(h, w)
        k = self.size / side
        nw, nh = max(1, round(w * k)), max(1, round(h * k))
        im = Image.fromarray(pixels, "RGB")
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        canvas = np.zeros((self.size, self.size, 3), dtype=np.uint8)  # black pad, bottom/right
        canvas[:nh, :nw] = np.asarray(im, dtype=np.uint8)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1.0 / 255.0)
        return np.ascontiguousarray(blob), side / self.size

    def postprocess(
        self, output: npt.NDArray[np.float32], scale: float, width: int, height: int
    ) -> list[Detection]:
        """Model output ``(1, 4 + classes, anchors)`` -> detections in image pixels."""
        rows = np.asarray(output, dtype=np.float32)[0].T  # (anchors, 4 + classes)
        cls = rows[:, 4:]
        best = cls.argmax(axis=1)
        score = cls[np.arange(cls.shape[0]), best]
        sel = score >= self.min_score
        if not sel.any():
            return []
        rows, best, score = rows[sel], best[sel], score[sel]
        cx, cy, bw, bh = (rows[:, i] * scale for i in range(4))
        x = np.clip(cx - bw / 2, 0, width)
        y = np.clip(cy - bh / 2, 0, height)
        bw = np.minimum(bw, width - x)
        bh = np.minimum(bh, height - y)
        boxes = np.stack([x, y, bw, bh], axis=1).astype(np.float32)
        out: list[Detection] = []
        for i in _nms(boxes, score, self.iou):
            b = boxes[i]
            out.append(
                Detection(
                    label=NUDENET_LABELS[int(best[i])],
                    score=float(score[i]),
                    box=(int(b[0]), int(b[1]), int(b[2]), int(b[3])),
                )
            )
        return out

    def detect(self, pixels: RGBArray) -> list[Detection]:
        blob, scale = self.preprocess(pixels)
        (out,) = self._session.run([self._output], {self._input: blob})
        return self.postprocess(
            np.asarray(out, dtype=np.float32), scale, int(pixels.shape[1]), int(pixels.shape[0])
        )


# ------------------------------------------------------------------------------ the policy
class NudityPolicy(BaseSettings):
    """Thresholds and choices of the warning flow (environment: ``LIFEGUARD_NUDITY_*``).

    A score is the model's confidence for one of :data:`EXPLICIT_LABELS`. Child accounts: at or
    above ``child_blur_score`` the image is blurred behind a warning; from ``child_warn_score`` up
    to that it is shown with a warning. Adult accounts get ``allow`` unless ``adult_opt_in`` (the
    adult asked for sensitive-content warnings): then ``blur`` at ``adult_blur_score``.
    """

    model_config = SettingsConfigDict(
        env_prefix="LIFEGUARD_NUDITY_", env_file=".env", extra="ignore"
    )

    child_blur_score: float = Field(default=0.5, ge=0, le=1)
    child_warn_score: float = Field(default=0.35, ge=0, le=1)
    adult_opt_in: bool = Field(default=False)
    adult_blur_score: float = Field(default=0.6, ge=0, le=1)
    child_may_view: bool = Field(
        default=True,
        description="A child may still view a blurred image after the warning and a second "
        "confirmation (as Apple's Communication Safety allows). False: only block/report/help.",
    )
    explicit_labels: frozenset[str] = Field(default=EXPLICIT_LABELS)
    threads: int = Field(default=0, ge=0, description="onnxruntime threads (0: its default).")
    detector: str = Field(
        default="nudenet",
        description="Which detector: 'nudenet' (the optional AGPL-3.0 NudeNet model) or "
        "'package.module:factory', a callable returning a NudityDetector (your own model).",
    )


@dataclass(frozen=True, slots=True)
class HelpResource:
    name: str
    what: str
    url: str
    phone: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "what": self.what, "url": self.url, "phone": self.phone}


#: Offered to a child with every blur or warning. Childline is the UK's service (free, 24h, for
#: under-19s); NCMEC's Take It Down helps under-18s get nude images of themselves taken down.
CHILD_HELP: tuple[HelpResource, ...] = (
    HelpResource(
        name="Childline",
        what="Talk to someone, free and confidential, any time (UK, under 19).",
        url="https://www.childline.org.uk",
        phone="0800 1111",
    ),
    HelpResource(
        name="Take It Down (NCMEC)",
        what="If a nude or sexual image of you (taken when you were under 18) is being shared, "
        "this helps get it removed.",
        url="https://takeitdown.ncmec.org",
    ),
)

CHILD_WARNING_BLUR = (
    "This image may show nudity, so we've blurred it. You don't have to look at it. "
    "It's not your fault that someone sent it, and you can block them or tell us about it. "
    "If something doesn't feel right, talk to an adult you trust or contact Childline."
)
CHILD_WARNING_WARN = (
    "This image might show nudity. You don't have to look at it. If someone is pressuring you "
    "or something doesn't feel right, you can block them, tell us, or talk to someone you trust."
)
CHILD_VIEW_CONFIRM = (
    "Are you sure? Images like this can be upsetting, and sharing nude images of anyone under "
    "18 is against the law. You can still block or report."
)
ADULT_WARNING = (
    "This image may contain nudity. It's blurred because you turned on sensitive-content warnings."
)


@dataclass(frozen=True, slots=True)
class FlowAction:
    """A choice the client offers: ``view`` (after ``confirm`` if set), ``block``, ``report``,
    ``help``."""

    id: Literal["view", "block", "report", "help"]
    label: str
    confirm: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "confirm": self.confirm}


@dataclass(frozen=True, slots=True)
class NudityVerdict:
    """What a client should do with one image, and why."""

    action: Action
    account: Account
    score: float  # highest score among the explicit labels (0 when none)
    reasons: tuple[Detection, ...]  # explicit-label detections at or above the warn threshold
    detections: tuple[Detection, ...]  # everything the model found
    model: str
    warning: str | None = None
    help: tuple[HelpResource, ...] = ()
    actions: tuple[FlowAction, ...] = ()
    image: dict[str, Any] = field(default_factory=dict)

    @property
    def blur(self) -> bool:
        return self.action == "blur"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "account": self.account,
            "score": round(self.score, 4),
            "reasons": [d.to_json() for d in self.reasons],
            "detections": [d.to_json() for d in self.detections],
            "model": self.model,
            "warning": self.warning,
            "help": [h.to_json() for h in self.help],
            "actions": [a.to_json() for a in self.actions],
            "image": self.image,
        }


def _child_actions(policy: NudityPolicy, action: Action) -> tuple[FlowAction, ...]:
    acts: list[FlowAction] = []
    if action == "blur" and policy.child_may_view:
        acts.append(FlowAction("view", "View anyway", confirm=CHILD_VIEW_CONFIRM))
    acts += [
        FlowAction("block", "Block this person"),
        FlowAction("report", "Report this image"),
        FlowAction("help", "Get help"),
    ]
    return tuple(acts)


def decide(
    detections: Sequence[Detection],
    account: Account,
    policy: NudityPolicy | None = None,
    *,
    model: str = "",
) -> NudityVerdict:
    """The policy: what to do for this account given what the model found."""
    if account not in ("child", "adult"):
        raise LifeguardError(
            f"account must be 'child' or 'adult', not {account!r}", code="invalid_account"
        )
    policy = policy or default_policy()
    explicit = [d for d in detections if d.label in policy.explicit_labels]
    top = max((d.score for d in explicit), default=0.0)
    dets = tuple(sorted(detections, key=lambda d: -d.score))
    if account == "child":
        warn_at = min(policy.child_warn_score, policy.child_blur_score)
        reasons = tuple(d for d in dets if d.label in policy.explicit_labels and d.score >= warn_at)
        if top >= policy.child_blur_score:
            action: Action = "blur"
            text: str | None = CHILD_WARNING_BLUR
        elif top >= warn_at and explicit:
            action, text = "warn", CHILD_WARNING_WARN
        else:
            return NudityVerdict("allow", account, top, (), dets, model)
        return NudityVerdict(
            action,
            account,
            top,
            reasons,
            dets,
            model,
            warning=text,
            help=CHILD_HELP,
            actions=_child_actions(policy, action),
        )
    if policy.adult_opt_in and explicit and top >= policy.adult_blur_score:
        reasons = tuple(
            d
            for d in dets
            if d.label in policy.explicit_labels and d.score >= policy.adult_blur_score
        )
        return NudityVerdict(
            "blur",
            account,
            top,
            reasons,
            dets,
            model,
            warning=ADULT_WARNING,
            actions=(
                FlowAction("view", "View"),
                FlowAction("block", "Block this person"),
                FlowAction("report", "Report this image"),
            ),
        )
    return NudityVerdict("allow", account, top, (), dets, model)


# ------------------------------------------------------------------------------ entry points
_default: dict[tuple[str, int], NudityDetector] = {}
_default_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def default_policy() -> NudityPolicy:
    """The policy from the environment (``LIFEGUARD_NUDITY_*``), read once."""
    return NudityPolicy()


def default_detector(threads: int = 0, spec: str = "nudenet") -> NudityDetector:
    """A process-wide detector (loaded once, on first use): NudeNet, or the operator's own
    model named ``package.module:factory`` (``LIFEGUARD_NUDITY_DETECTOR``)."""
    key = (spec, threads)
    with _default_lock:
        det = _default.get(key)
        if det is None:
            det = _default[key] = _load_detector(spec, threads)
        return det


def _load_detector(spec: str, threads: int) -> NudityDetector:
    if spec == "nudenet":
        return NudeNetDetector(threads=threads)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise NudityUnavailable(
            f"LIFEGUARD_NUDITY_DETECTOR={spec!r}: expected 'nudenet' or 'package.module:factory'"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise NudityUnavailable(f"LIFEGUARD_NUDITY_DETECTOR={spec!r}: {e}") from e
    det = factory()
    if not isinstance(det, NudityDetector):
        raise NudityUnavailable(
            f"LIFEGUARD_NUDITY_DETECTOR={spec!r} returned {type(det).__name__}, which has no "
            "`name` and `detect(pixels)`"
        )
    return det


def check_decoded(
    image: DecodedImage,
    account: Account,
    *,
    policy: NudityPolicy | None = None,
    detector: NudityDetector | None = None,
    adult_opt_in: bool | None = None,
) -> NudityVerdict:
    """Run the detector on a decoded image and apply the policy. Boxes are given in pixels of the
    full-resolution image (a big JPEG is analysed at reduced scale). ``adult_opt_in`` (this adult
    turned sensitive-content warnings on) overrides the policy's default."""
    policy = policy or default_policy()
    if adult_opt_in is not None and adult_opt_in != policy.adult_opt_in:
        policy = policy.model_copy(update={"adult_opt_in": adult_opt_in})
    det = detector if detector is not None else default_detector(policy.threads, policy.detector)
    found = det.detect(image.pixels)
    ah, aw = int(image.pixels.shape[0]), int(image.pixels.shape[1])
    if (aw, ah) != (image.width, image.height):
        kx, ky = image.width / aw, image.height / ah
        found = [
            Detection(
                d.label,
                d.score,
                (
                    round(d.box[0] * kx),
                    round(d.box[1] * ky),
                    round(d.box[2] * kx),
                    round(d.box[3] * ky),
                ),
            )
            for d in found
        ]
    v = decide(found, account, policy, model=det.name)
    info = {
        "format": image.format,
        "width": image.width,
        "height": image.height,
        "analysed_width": aw,
        "analysed_height": ah,
    }
    return NudityVerdict(
        v.action,
        v.account,
        v.score,
        v.reasons,
        v.detections,
        v.model,
        v.warning,
        v.help,
        v.actions,
        info,
    )


def check_image(
    data: bytes | Path,
    account_is_child: bool,
    *,
    settings: Settings | None = None,
    policy: NudityPolicy | None = None,
    detector: NudityDetector | None = None,
    adult_opt_in: bool | None = None,
) -> NudityVerdict:
    """Decode ``data`` safely and decide ``blur | warn | allow`` for a child or adult account.

    For the client toolkit: runs where it is called; nothing is sent or kept. Raises
    :class:`MediaError` for unusable input and :class:`NudityUnavailable` when the ``nudity``
    extra is missing (and no ``detector`` is given). ``adult_opt_in``: this adult turned
    sensitive-content warnings on (ignored for a child, who always gets them).
    """
    image = decode_image(data, settings)
    return check_decoded(
        image,
        "child" if account_is_child else "adult",
        policy=policy,
        detector=detector,
        adult_opt_in=adult_opt_in,
    )
