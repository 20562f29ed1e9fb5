"""Frame rules against the real ffmpeg: which frames differ, and what the JPEG round trip costs and changes.

    python -m bench.frame_rule_bench [--size 640x360] [--repeat 3]

Needs the ``imageio-ffmpeg`` binary (dev extra). Prints

1. per frame rate (10-s clips whose frames carry their own number): how many of the 80 CLIP rows
   of ``hold`` come from a different frame than the official pipeline (``ffmpeg -r 8`` + linspace,
   read back from ffmpeg's own JPEG files), how far apart in time, how many fall in another
   second; and that ``official`` picks exactly ffmpeg's frames;
2. ``--jpeg-roundtrip`` on a textured 10-s H.264 clip: CPU seconds per clip of ``decode_video``
   without and with it (best of ``--repeat``, interleaved; the process's CPU time, which other
   load disturbs less than wall-clock), the pixel difference of the 80 crops to the crops of
   ffmpeg's JPEG files, and the cosine of their embeddings with a random-weight ViT-B/16.

Nothing is asserted; timings depend on what else runs on the machine.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from bench.pixels_bench import _cpu_seconds
from lsld_engine import media
from lsld_engine.media.frame_rule import linspace_pick
from lsld_engine.testing import ffmpeg_oracle
from lsld_engine.testing.videos import VideoSpec, bench_spec, make_video, read_frame_index

RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(50),
         Fraction(60)]


def _index(frame, rotation):
    return read_frame_index(frame.to_ndarray(format="rgb24"))


def rows_that_differ(exe: str, folder: Path) -> None:
    print("\n1. 10-s clips: CLIP rows of each rule vs the official pipeline run with the real ffmpeg")
    print(f"   {'fps':>9s} {'N jpgs':>6s} {'official == ffmpeg':>18s} {'hold rows differ':>16s} "
          f"{'max |dt| s':>10s} {'other second':>12s}")
    for fps in RATES:
        spec = VideoSpec(fps=fps)
        p = make_video(folder / f"r{float(fps):.3f}.mp4", spec)
        ref = ffmpeg_oracle.frame_numbers(ffmpeg_oracle.official_frames(exe, p, folder / f"r{float(fps):.3f}"))
        official = ref[linspace_pick(len(ref), media.FRAMES_PER_WINDOW)]
        ours = np.array(media.decode_media(p, audio=False, frame_fn=_index).frames)
        hold = np.array(media.decode_media(p, audio=False, frame_fn=_index, frame_rule="hold").frames)
        dt = np.abs(hold - official) / float(fps)
        other = np.sum(np.floor(hold / float(fps)) != np.floor(official / float(fps)))
        print(f"   {float(fps):9.3f} {len(ref):6d} {str(bool((ours == official).all())):>18s} "
              f"{int((hold != official).sum()):>13d}/80 {dt.max():10.3f} {int(other):>9d}/80")


def roundtrip(exe: str, folder: Path, size: tuple[int, int], repeat: int) -> None:
    import torch

    from lsld_engine.encoders.clip import build_clip_image_encoder

    w, h = size
    p = make_video(folder / f"tex_{w}x{h}.mp4", bench_spec(w, h))
    files = ffmpeg_oracle.official_frames(exe, p, folder / "tex")
    official = np.stack([media.clip_crop(ffmpeg_oracle.read_rgb(files[j]))
                         for j in linspace_pick(len(files), media.FRAMES_PER_WINDOW)])
    cpu = {False: float("inf"), True: float("inf")}
    crops = {}
    for _ in range(repeat):  # interleaved: other load hits both alike
        for rt in (False, True):
            c = _cpu_seconds()
            crops[rt] = media.decode_video(p, audio=False, jpeg_roundtrip=rt).frames[0]
            cpu[rt] = min(cpu[rt], _cpu_seconds() - c)
    print(f"\n2. JPEG round trip, one 10-s {w}x{h} textured H.264 clip ({len(files)} grid images), "
          f"CPU s per clip (video only), best of {repeat}")
    print(f"   official rule                  {cpu[False]:7.3f} s")
    print(f"   official rule + JPEG round trip {cpu[True]:6.3f} s   (+{cpu[True] - cpu[False]:.3f} s, "
          f"x{cpu[True] / cpu[False]:.2f})")
    torch.manual_seed(0)
    enc = build_clip_image_encoder(None, config="ViT-B-16")

    def emb(x):
        with torch.inference_mode():
            return enc(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255.0)

    ref = emb(official)
    print(f"   80 crops vs the crops of ffmpeg's JPEG files; random-weight ViT-B/16 cosine (torch {torch.__version__})")
    print(f"   {'':32s} {'max |diff|':>10s} {'mean |diff|':>11s} {'cos mean':>9s} {'cos min':>9s}")
    for rt in (False, True):
        d = np.abs(crops[rt].astype(int) - official.astype(int))
        cos = torch.nn.functional.cosine_similarity(emb(crops[rt]), ref)
        name = "with JPEG round trip" if rt else "without (decoded frames)"
        print(f"   {name:32s} {d.max():10d} {d.mean():11.4f} {cos.mean().item():9.6f} {cos.min().item():9.6f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    exe = ffmpeg_oracle.ffmpeg_exe()
    if exe is None:
        raise SystemExit("frame_rule_bench: needs imageio-ffmpeg (pip install -e '.[dev]')")
    print(f"{ffmpeg_oracle.ffmpeg_version(exe)}; machine: {os.cpu_count()} CPUs (shared: noisy)")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        rows_that_differ(exe, Path(d))
        roundtrip(exe, Path(d), tuple(int(x) for x in args.size.split("x")), args.repeat)
        print(f"\n({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
