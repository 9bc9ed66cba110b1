"""Nudity warnings (lifeguard.safety.nudity): policy, NudeNet adapter, client call, HTTP endpoint.

No explicit images anywhere: the policy is tested with a fake detector returning synthetic
detections; the real detector runs on benign photos (expect ``allow``) and on a Kodak portrait
(a face is found: the model really runs); the box/NMS logic is tested on a synthetic model output.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from api_live import Live, live_server
from conftest import PHOTOS
from lifeguard.errors import LifeguardError, MediaError
from lifeguard.safety import nudity
from lifeguard.safety.nudity import (
    CHILD_HELP,
    NUDENET_LABELS,
    Detection,
    NudeNetDetector,
    NudityDetector,
    NudityPolicy,
    NudityUnavailable,
    check_image,
    decide,
)
from lifeguard.settings import Settings

KODAK = PHOTOS / "kodak"
CLOTHING = PHOTOS / "clothing"
BENIGN = [*sorted(CLOTHING.glob("*.jpg"))[:6], KODAK / "01.png", KODAK / "15.png"]
PORTRAIT = KODAK / "04.png"  # a woman's face in a red hat: FACE_FEMALE


def det(label: str, score: float, box: tuple[int, int, int, int] = (0, 0, 10, 10)) -> Detection:
    return Detection(label, score, box)


class FakeDetector:
    """Returns fixed detections, recording the pixels it was given."""

    name = "fake"

    def __init__(self, *found: Detection) -> None:
        self.found = list(found)
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, pixels: npt.NDArray[np.uint8]) -> list[Detection]:
        self.shapes.append(pixels.shape)
        return list(self.found)


@pytest.fixture(scope="module")
def nudenet() -> NudeNetDetector:
    return NudeNetDetector(threads=1)


# ------------------------------------------------------------------------------ policy
def test_fake_detector_satisfies_the_interface() -> None:
    assert isinstance(FakeDetector(), NudityDetector)


def test_child_blur_flow_has_warning_help_and_actions() -> None:
    v = decide(
        [det("FACE_FEMALE", 0.9), det("FEMALE_BREAST_EXPOSED", 0.81), det("BUTTOCKS_EXPOSED", 0.4)],
        "child",
        NudityPolicy(),
    )
    assert v.action == "blur" and v.blur
    assert v.score == pytest.approx(0.81)
    assert [d.label for d in v.reasons] == ["FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"]
    assert len(v.detections) == 3
    assert v.warning and "blurred" in v.warning
    names = {h.name: h for h in v.help}
    assert names["Childline"].phone == "0800 1111"
    assert "childline.org.uk" in names["Childline"].url
    assert "takeitdown.ncmec.org" in names["Take It Down (NCMEC)"].url
    ids = [a.id for a in v.actions]
    assert ids == ["view", "block", "report", "help"]
    assert v.actions[0].confirm  # viewing needs a second confirmation
    j = v.to_json()
    assert j["action"] == "blur" and j["help"][0]["phone"] == "0800 1111"


def test_child_warn_band_and_allow() -> None:
    p = NudityPolicy()
    v = decide([det("MALE_GENITALIA_EXPOSED", 0.4)], "child", p)
    assert v.action == "warn"
    assert [a.id for a in v.actions] == ["block", "report", "help"]  # nothing hidden: no "view"
    assert v.help == CHILD_HELP and v.warning
    assert decide([det("MALE_GENITALIA_EXPOSED", 0.34)], "child", p).action == "allow"
    assert decide([], "child", p).action == "allow"


def test_non_nudity_labels_never_warn() -> None:
    found = [
        det(label, 0.99)
        for label in NUDENET_LABELS
        if label not in nudity.EXPLICIT_LABELS  # faces, feet, bare male chest, covered parts
    ]
    v = decide(found, "child", NudityPolicy())
    assert v.action == "allow" and v.score == 0 and v.warning is None and v.actions == ()
    assert len(v.detections) == len(found)


def test_child_may_view_off_removes_view() -> None:
    v = decide([det("ANUS_EXPOSED", 0.9)], "child", NudityPolicy(child_may_view=False))
    assert v.action == "blur" and "view" not in [a.id for a in v.actions]


def test_adults_allowed_unless_opted_in() -> None:
    found = [det("FEMALE_GENITALIA_EXPOSED", 0.95)]
    assert decide(found, "adult", NudityPolicy()).action == "allow"
    v = decide(found, "adult", NudityPolicy(adult_opt_in=True))
    assert v.action == "blur" and v.help == () and v.warning
    assert [a.id for a in v.actions] == ["view", "block", "report"]
    assert (
        decide(
            [det("FEMALE_GENITALIA_EXPOSED", 0.5)], "adult", NudityPolicy(adult_opt_in=True)
        ).action
        == "allow"
    )


def test_thresholds_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFEGUARD_NUDITY_CHILD_BLUR_SCORE", "0.9")
    monkeypatch.setenv("LIFEGUARD_NUDITY_CHILD_WARN_SCORE", "0.7")
    p = NudityPolicy()
    assert (p.child_blur_score, p.child_warn_score) == (0.9, 0.7)
    assert decide([det("BUTTOCKS_EXPOSED", 0.8)], "child", p).action == "warn"
    assert decide([det("BUTTOCKS_EXPOSED", 0.6)], "child", p).action == "allow"
    monkeypatch.setenv("LIFEGUARD_NUDITY_CHILD_BLUR_SCORE", "1.5")
    with pytest.raises(ValueError):
        NudityPolicy()


def test_unknown_account_is_refused() -> None:
    with pytest.raises(LifeguardError, match="account"):
        decide([], "teen", NudityPolicy())  # type: ignore[arg-type]


def test_check_image_with_fake_detector_scales_boxes_to_full_image(tmp_path: Path) -> None:
    # A 2048x1536 JPEG is analysed at reduced scale (fast decode): boxes come back in full pixels.
    big = Image.open(KODAK / "03.png").convert("RGB").resize((2048, 1536))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=85)
    fake = FakeDetector(det("FEMALE_BREAST_EXPOSED", 0.7, (10, 20, 100, 50)))
    v = check_image(buf.getvalue(), account_is_child=True, detector=fake)
    (shape,) = fake.shapes
    assert shape[1] < 2048  # analysed smaller
    k = 2048 / shape[1]
    assert v.action == "blur" and v.model == "fake"
    assert v.reasons[0].box == (round(10 * k), round(20 * k), round(100 * k), round(50 * k))
    assert v.image["width"] == 2048 and v.image["analysed_width"] == shape[1]
    adult = check_image(buf.getvalue(), account_is_child=False, detector=fake)
    assert adult.action == "allow"
    assert check_image(buf.getvalue(), False, detector=fake, adult_opt_in=True).action == "blur"


def test_operator_detector_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LIFEGUARD_NUDITY_DETECTOR=module:factory swaps in the operator's own model (no NudeNet).
    (tmp_path / "my_nudity_model.py").write_text(
        "from lifeguard.safety.nudity import Detection\n"
        "class M:\n"
        "    name = 'in-house'\n"
        "    def detect(self, pixels):\n"
        "        return [Detection('BUTTOCKS_EXPOSED', 0.8, (0, 0, 4, 4))]\n"
        "def make():\n"
        "    return M()\n"
        "def wrong():\n"
        "    return object()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(nudity, "_default", {})
    png = (KODAK / "01.png").read_bytes()
    monkeypatch.setenv("LIFEGUARD_NUDITY_DETECTOR", "my_nudity_model:make")
    policy = NudityPolicy()
    v = check_image(png, account_is_child=True, policy=policy)
    assert v.model == "in-house" and v.action == "blur"
    for spec, msg in [
        ("my_nudity_model:wrong", "no `name`"),
        ("my_nudity_model:absent", "absent"),
        ("no_such_module_xyz:make", "no_such_module_xyz"),
        ("just-a-name", "expected 'nudenet'"),
    ]:
        monkeypatch.setenv("LIFEGUARD_NUDITY_DETECTOR", spec)
        with pytest.raises(NudityUnavailable, match=msg):
            check_image(png, account_is_child=True, policy=NudityPolicy())


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt"),
        (b"%PDF-1.4 x", "unsupported"),
    ],
)
def test_bad_input_is_a_media_error(data: bytes, code: str) -> None:
    with pytest.raises(MediaError) as e:
        check_image(data, account_is_child=True, detector=FakeDetector())
    assert e.value.code in (code, "truncated")


# ------------------------------------------------------------------------------ NudeNet adapter
def test_model_ships_inside_the_installed_package() -> None:
    path = nudity.nudenet_model_path()
    assert path.name == "320n.onnx" and "site-packages" in path.parts
    assert path.stat().st_size > 5_000_000


def test_labels_match_model_metadata(nudenet: NudeNetDetector) -> None:
    names = nudenet._session.get_modelmeta().custom_metadata_map["names"]
    pairs = re.findall(r"(\d+): '([A-Z_]+)'", names)
    assert [n for _, n in sorted(pairs, key=lambda p: int(p[0]))] == list(NUDENET_LABELS)
    assert "AGPL" in nudenet.model_license


def test_missing_extra_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(NudityUnavailable, match="nudity"):
        NudeNetDetector()


def test_preprocess_pads_bottom_right(nudenet: NudeNetDetector) -> None:
    px = np.full((100, 200, 3), 255, dtype=np.uint8)
    blob, scale = nudenet.preprocess(px)
    assert blob.shape == (1, 3, 320, 320) and blob.dtype == np.float32
    assert scale == pytest.approx(200 / 320)
    assert blob[0, :, :160, :].min() == pytest.approx(1.0)  # image: top half
    assert blob[0, :, 160:, :].max() == 0.0  # padding: bottom half


def test_postprocess_nms_and_boxes(nudenet: NudeNetDetector) -> None:
    out = np.zeros((1, 4 + len(NUDENET_LABELS), 5), dtype=np.float32)
    face = NUDENET_LABELS.index("FACE_MALE")
    feet = NUDENET_LABELS.index("FEET_COVERED")

    def put(i: int, cx: float, cy: float, w: float, h: float, cls: int, s: float) -> None:
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = s

    put(0, 100, 100, 40, 40, face, 0.9)
    put(1, 102, 101, 40, 40, face, 0.6)  # overlaps the first: suppressed
    put(2, 250, 300, 60, 40, feet, 0.5)
    put(3, 10, 10, 10, 10, face, 0.1)  # below min_score
    put(4, 310, 310, 40, 40, feet, 0.3)  # clipped at the image edge
    found = nudenet.postprocess(out, scale=2.0, width=640, height=640)
    assert [(d.label, round(d.score, 2)) for d in found] == [
        ("FACE_MALE", 0.9),
        ("FEET_COVERED", 0.5),
        ("FEET_COVERED", 0.3),
    ]
    assert found[0].box == (160, 160, 80, 80)
    assert found[1].box == (440, 560, 120, 80)
    assert found[2].box == (580, 580, 60, 60)


def test_benign_photos_are_allowed(nudenet: NudeNetDetector) -> None:
    for f in BENIGN:
        v = check_image(f.read_bytes(), account_is_child=True, detector=nudenet)
        assert v.action == "allow", (f.name, v.to_json())
        assert v.model == "nudenet-3.4-320n"


def test_real_model_finds_a_face(nudenet: NudeNetDetector) -> None:
    v = check_image(PORTRAIT, account_is_child=True, detector=nudenet)
    assert v.action == "allow"
    faces = [d for d in v.detections if d.label == "FACE_FEMALE"]
    assert faces and faces[0].score > 0.6
    x, y, w, h = faces[0].box
    assert 0 <= x < x + w <= v.image["width"] and 0 <= y < y + h <= v.image["height"]


def test_agrees_with_nudenets_own_wrapper(nudenet: NudeNetDetector) -> None:
    from nudenet import NudeDetector  # NudeNet's wrapper (OpenCV pre/post-processing)

    ref = {d["class"]: d["score"] for d in NudeDetector().detect(str(PORTRAIT))}
    ours = {d.label: d.score for d in check_image(PORTRAIT, True, detector=nudenet).detections}
    assert ref.keys() >= {"FACE_FEMALE"} and ours.keys() >= {"FACE_FEMALE"}
    assert abs(ref["FACE_FEMALE"] - ours["FACE_FEMALE"]) < 0.08


# ------------------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(Settings(data_dir=tmp_path_factory.mktemp("nudity"))) as lv:
        yield lv


def test_http_benign_photo_is_allowed(live: Live) -> None:
    with live.client(live.key("hash")) as c:
        r = c.post(
            "/v1/safety/nudity",
            params={"account": "child"},
            files={"file": ("p.png", PORTRAIT.read_bytes(), "image/png")},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["action"] == "allow" and body["account"] == "child"
        assert any(d["label"] == "FACE_FEMALE" for d in body["detections"])
        assert (body["image"]["width"], body["image"]["height"]) == (512, 768)
        r = c.post(
            "/v1/safety/nudity",
            params={"account": "adult", "warnings": "true"},
            files={"file": ("c.jpg", BENIGN[0].read_bytes(), "image/jpeg")},
        )
        assert r.status_code == 200 and r.json()["action"] == "allow"


def test_http_errors(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    with live.client(live.key("hash")) as c:
        r = c.post(
            "/v1/safety/nudity", files={"file": ("x.jpg", b"\xff\xd8\xffjunk", "image/jpeg")}
        )
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] in ("corrupt", "truncated")
        r = c.post(
            "/v1/safety/nudity",
            params={"account": "teen"},
            files={"file": ("p.png", PORTRAIT.read_bytes(), "image/png")},
        )
        assert r.status_code == 422
        # Without the extra (no model): 503, not 500.
        monkeypatch.setattr(nudity, "_default", {})

        def missing() -> Path:
            raise NudityUnavailable("the NudeNet model is not installed")

        monkeypatch.setattr(nudity, "nudenet_model_path", missing)
        r = c.post(
            "/v1/safety/nudity", files={"file": ("p.png", PORTRAIT.read_bytes(), "image/png")}
        )
        assert r.status_code == 503 and r.json()["code"] == "nudity_detector_unavailable"
    with live.client(live.key("bank:read")) as c:
        r = c.post("/v1/safety/nudity", files={"file": ("p.png", b"x", "image/png")})
        assert r.status_code == 403
