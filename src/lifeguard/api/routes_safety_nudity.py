"""``POST /v1/safety/nudity``: should a client blur, warn about or allow an image?

Scope ``hash`` (like ``/v1/hash``: the upload is analysed and dropped, nothing is stored or
matched). The detector (the ``nudity`` extra) loads on the first request; without the extra the
endpoint answers 503 ``nudity_detector_unavailable``.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, File, Query, Request, UploadFile
from pydantic import BaseModel, Field

from lifeguard.api.problems import Problem
from lifeguard.api.routes_v1 import read_upload
from lifeguard.api.routing import GuardedRoute, scoped
from lifeguard.api.state import get_state
from lifeguard.safety.nudity import NudityUnavailable, check_image

safety = APIRouter(prefix="/v1/safety", route_class=GuardedRoute)


class DetectionOut(BaseModel):
    label: str = Field(description="NudeNet class, e.g. FEMALE_BREAST_EXPOSED, FACE_MALE.")
    score: float
    box: list[int] = Field(description="[x, y, width, height] in pixels of the uploaded image.")


class HelpOut(BaseModel):
    name: str
    what: str
    url: str
    phone: str | None


class FlowActionOut(BaseModel):
    id: Literal["view", "block", "report", "help"]
    label: str
    confirm: str | None = Field(description="Ask this (a second confirmation) before doing it.")


class NudityVerdictOut(BaseModel):
    action: Literal["blur", "warn", "allow"] = Field(
        description="blur: show it blurred behind the warning; warn: show the warning with the "
        "image; allow: show it."
    )
    account: Literal["child", "adult"]
    score: float = Field(description="Highest score among the nudity labels (0 when none).")
    reasons: list[DetectionOut] = Field(description="The detections behind a blur or warning.")
    detections: list[DetectionOut] = Field(description="Everything the model found.")
    model: str
    warning: str | None = Field(description="Text to show with a blur or warning.")
    help: list[HelpOut] = Field(description="Help resources to offer a child (Childline, ...).")
    actions: list[FlowActionOut] = Field(description="Choices to offer, in order.")
    image: dict[str, str | int] = Field(description="format, width, height, analysed size.")


@safety.post(
    "/nudity",
    tags=["safety"],
    summary="Nudity check of an uploaded image: blur, warn or allow, with the warning flow",
    response_model=NudityVerdictOut,
    responses={503: {"description": "the nudity detector is not installed"}},
)
@scoped("hash")
async def nudity_check(
    request: Request,
    file: Annotated[UploadFile, File(description="The image (nothing is kept).")],
    account: Annotated[
        Literal["child", "adult"], Query(description="The recipient's account type.")
    ] = "child",
    warnings: Annotated[
        bool,
        Query(description="Adult accounts: the user turned sensitive-content warnings on."),
    ] = False,
) -> NudityVerdictOut:
    st = get_state(request)
    data = await read_upload(st, file)
    fn = functools.partial(
        check_image, data, account == "child", settings=st.settings, adult_opt_in=warnings
    )
    try:
        verdict = await anyio.to_thread.run_sync(fn, limiter=st.hash_limiter)
    except NudityUnavailable as e:
        raise Problem(503, e.code, e.message, title="Nudity detection unavailable") from None
    return NudityVerdictOut.model_validate(verdict.to_json())
