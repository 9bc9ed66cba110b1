"""Nudity warnings: false-warning rate on benign photos and time per image.

    python bench/bench_nudity.py [--limit N] [--threads T] [--json bench/out/nudity.json]

Runs ``lifeguard.safety.nudity`` (NudeNet 320n.onnx via onnxruntime, default policy) over every
image under /work/shared/data/photos (3,500 clothing photos + 24 Kodak photos, sorted; all benign),
decoding each with lifeguard's safe decoder (default settings: reduced-scale JPEG fast path).

Reports, for a child account: how many images would be blurred or warned (every one is a false
warning: the set has no nudity), and which labels caused them; for an adult account with warnings
turned on: how many would be blurred. Time per image (decode + detect, and detect alone) p50/p99,
single process, ``--threads`` onnxruntime threads (default 1). Prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from lifeguard.safety.nudity import EXPLICIT_LABELS, NudeNetDetector, NudityPolicy, decide
from lifeguard.signals.image import decode_image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
SWEEP = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)  # thresholds for the false-warning curve
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic"}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "nudity.json")
    a = ap.parse_args()

    files = sorted(p for p in a.photos.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    if a.limit:
        files = files[: a.limit]
    if not files:
        print(f"no images under {a.photos}", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    det = NudeNetDetector(threads=a.threads)
    load_s = time.perf_counter() - t0
    policy = NudityPolicy()
    adult_policy = NudityPolicy(adult_opt_in=True)
    total_ms: list[float] = []
    detect_ms: list[float] = []
    child: Counter[str] = Counter()
    adult: Counter[str] = Counter()
    cause: Counter[str] = Counter()  # explicit label behind each child warning/blur (top reason)
    seen: Counter[str] = Counter()  # every label the model reported (score >= 0.25)
    top_scores: list[float] = []
    flagged: list[dict[str, object]] = []
    errors: list[str] = []
    started = datetime.now(UTC)
    for i, f in enumerate(files):
        t = time.perf_counter()
        try:
            img = decode_image(f)
        except Exception as e:  # report it and go on
            errors.append(f"{f.name}: {e}")
            continue
        td = time.perf_counter()
        dets = det.detect(img.pixels)
        end = time.perf_counter()
        total_ms.append((end - t) * 1000)
        detect_ms.append((end - td) * 1000)
        seen.update(d.label for d in dets)
        v = decide(dets, "child", policy, model=det.name)
        top_scores.append(v.score)
        child[v.action] += 1
        adult[decide(dets, "adult", adult_policy, model=det.name).action] += 1
        if v.action != "allow":
            cause[v.reasons[0].label] += 1
            flagged.append(
                {
                    "file": str(f.relative_to(a.photos)),
                    "action": v.action,
                    "reasons": [r.to_json() for r in v.reasons],
                }
            )
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(files)} ...", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    n = len(total_ms)
    fw = child["blur"] + child["warn"]
    res = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "model": det.name,
        "model_license": det.model_license,
        "threads": a.threads,
        "images": n,
        "decode_errors": errors,
        "model_load_s": round(load_s, 2),
        "wall_s": round(wall, 1),
        "child": dict(child),
        "child_false_warning_rate": fw / n if n else None,
        "child_false_blur_rate": child["blur"] / n if n else None,
        "adult_opt_in": dict(adult),
        "adult_default_blurs": 0,
        "causes": dict(cause),
        "labels_seen": dict(seen.most_common()),
        "explicit_top_score_p99": pct(top_scores, 0.99),
        "explicit_top_score_max": max(top_scores, default=0.0),
        "explicit_scores_over_0.25": sum(s >= 0.25 for s in top_scores),
        "ms_total_p50": pct(total_ms, 0.5),
        "ms_total_p99": pct(total_ms, 0.99),
        "ms_total_mean": statistics.fmean(total_ms) if total_ms else None,
        "ms_detect_p50": pct(detect_ms, 0.5),
        "ms_detect_p99": pct(detect_ms, 0.99),
        "sweep": {f"{t:.2f}": sum(x >= t for x in top_scores) for t in SWEEP},
        "flagged": flagged,
        "policy": {
            "child_blur_score": policy.child_blur_score,
            "child_warn_score": policy.child_warn_score,
            "adult_blur_score": policy.adult_blur_score,
            "explicit_labels": sorted(EXPLICIT_LABELS),
        },
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=2))
    print(
        f"""
| measure | value |
| --- | --- |
| images (all benign) | {n:,} ({len(errors)} decode errors) |
| child account: blur / warn / allow | {child["blur"]} / {child["warn"]} / {child["allow"]} |
| **false-warning rate, child (blur + warn)** | **{100 * fw / max(n, 1):.2f}%** (goal <= 1%) |
| labels behind them | {", ".join(f"{k} {v}" for k, v in cause.most_common()) or "none"} |
| adult account, default | allow for all (no warnings unless opted in) |
| adult account, warnings on: blur | {adult["blur"]} |
| highest explicit-label score seen (p99 / max) | {res["explicit_top_score_p99"]:.3f} / {res["explicit_top_score_max"]:.3f} |
| ms per image, decode + detect, p50 / p99 | {res["ms_total_p50"]:.1f} / {res["ms_total_p99"]:.1f} |
| ms per image, detect only, p50 / p99 | {res["ms_detect_p50"]:.1f} / {res["ms_detect_p99"]:.1f} |
| images with a nudity-label score >= t (t: count) | {", ".join(f"{t}: {c}" for t, c in res["sweep"].items())} |
| model load | {load_s:.2f} s |
| labels reported (score >= 0.25) | {", ".join(f"{k} {v}" for k, v in seen.most_common()) or "none"} |

{res["date"]}, {res["machine"]}, onnxruntime threads {a.threads}, load average
{res["loadavg_start"]} at start, {res["loadavg_end"]} at end; wall {wall:.0f} s. JSON: {a.json}
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
