"""`dreamvideo layers [MODEL] [IMAGE]`: the layers a dream can end at, with the blob's
shape and the receptive field at the frame's size; `--sheet OUT.png` dreams the image at a
spread of them (or at --layers) into one labelled grid, to choose -l by looking."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dreamer.caffe import models
from dreamer.caffe.net import load_net
from dreamer.caffe.random_weights import random_net
from dreamer.caffe.registry import MODELS
from dreamer.cli import signals
from dreamer.config import BGR_MEAN, DreamConfig, validate
from dreamer.dream.sheet import dream_sheet, layer_rows, spread
from dreamer.dream.transforms import octave_sizes
from dreamer.errors import DreamerError
from dreamer.image import read_image
from dreamer.run.fit import check_octaves
from dreamer.video.frames import preview_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DETAIL_TYPES = {"ReLU", "LRN", "BatchNorm", "Scale", "PReLU", "TanH", "Sigmoid", "Power"}
SHEET_WIDTH = 320


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    d = DreamConfig("", "")
    ap = argparse.ArgumentParser(prog=prog, description=__doc__)
    ap.add_argument("model", nargs="?", metavar="MODEL",
                    help="a model from `dreamvideo models list`, or a model folder "
                         "(default: bvlc_googlenet, searched as stage 2 does)")
    ap.add_argument("image", nargs="?", metavar="IMAGE",
                    help="an image or a frames folder (its first frame): its size is the "
                         "listing's, and the sheet dreams it (default: the demo's photo)")
    ap.add_argument("--sheet", metavar="OUT.png", help="dream the image at each layer "
                    "into this labelled grid")
    ap.add_argument("--layers", nargs="+", metavar="LAYER",
                    help="the sheet's layers (default: a spread of --count over the net)")
    ap.add_argument("--count", type=int, default=11, help="layers in the default spread "
                    "(default: %(default)s)")
    ap.add_argument("--all", action="store_true", help="list every layer, the ReLUs and "
                    "normalisations inside blocks too")
    ap.add_argument("--size", metavar="WxH", help="the frame size to list at, without an "
                    "image (default: 540x360)")
    ap.add_argument("-p", "--preview", type=int, default=None, metavar="WIDTH",
                    help=f"resize the image to this width first (the sheet's default: "
                         f"{SHEET_WIDTH}, as a quick preview)")
    ap.add_argument("-t", "--model_path", help="the model folder (as stage 2's -t)")
    ap.add_argument("-m", "--model_name", default=d.model_name, help="the caffemodel's name")
    ap.add_argument("--prototxt", help="the deploy file")
    ap.add_argument("--random-weights", action="store_true",
                    help="a model whose weights are not here: its deploy file alone, with "
                         "random weights (the shapes and fields are the real net's; the "
                         "sheet shows what such a net dreams, not the trained one)")
    ap.add_argument("-itr", "--iterations", type=int, default=d.iter_n)
    ap.add_argument("-oct", "--octaves", type=int, default=d.octave_n)
    ap.add_argument("-octs", "--octavescale", type=float, default=d.octave_scale)
    ap.add_argument("-s", "--stepsize", type=float, default=d.step_size)
    ap.add_argument("-j", "--jitter", type=int, default=d.jitter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean", default=",".join(f"{v:g}" for v in BGR_MEAN), metavar="B,G,R")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing sheet")
    return ap


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    return signals.run(lambda: _layers(args), again="run the same command again")


def _layers(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 200:
        raise DreamerError(f"--count {args.count}: give 1 to 200 layers")
    model, image_path = _positionals(args)
    config = _config(args)
    prototxt, caffemodel = _model_files(args, model)
    if args.sheet:
        _check_sheet(Path(args.sheet), args.overwrite)
    image = _image(image_path, args)
    height, width = image.shape[:2] if image is not None else _size(args.size or "540x360")
    net = random_net(prototxt) if args.random_weights else load_net(prototxt, caffemodel)
    rows = layer_rows(net, height, width)
    info = MODELS.get(model or "") or models.info_for_weights(caffemodel.name) or next(
        (m for m in MODELS.values() if m.prototxt == prototxt.name and m.name != "bvlc_googlenet"
         and prototxt.name != "deploy.prototxt"), None)
    usual = info.layers if info else ("inception_4c/output",)
    # the spread picks layers that take the smallest octave too: each is dreamed there
    sh, sw = octave_sizes(height, width, config.octave_n, config.octave_scale)[-1]
    picked = args.layers or spread(layer_rows(net, sh, sw), args.count, keep=usual[:1])
    for layer in args.layers or ():
        net.check_end(layer)
    _print(rows, picked, f"{caffemodel.parent.name} ({prototxt.name})", width, height,
           args.all)
    if args.sheet:
        check_octaves(net, picked, (width, height), config)
        _sheet(net, image, picked, config, args.seed, Path(args.sheet))
    return 0


def _positionals(args) -> tuple[str | None, str | None]:
    """(MODEL, IMAGE): one positional that is an image (or a folder of frames) is IMAGE."""
    model, image = args.model, args.image
    if image is None and model is not None and _is_image(model):
        return None, model
    return model, image


def _is_image(text: str) -> bool:
    path = Path(text)
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES) or (
        path.is_dir() and not any(path.glob("*.prot*xt")) and any(_frames(path)))


def _frames(folder: Path):
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _config(args) -> DreamConfig:
    """The dream's settings, checked as stage 2 checks them."""
    from dreamer.config import settings

    mean = settings()["mean"].parse(args.mean) if isinstance(args.mean, str) else args.mean
    config = DreamConfig("", "", octave_n=args.octaves, octave_scale=args.octavescale,
                         iter_n=args.iterations, jitter=args.jitter, step_size=args.stepsize,
                         mean=mean)
    validate(config)
    return config


def _model_files(args, model: str | None) -> tuple[Path, Path]:
    if args.random_weights:
        return _deploy_only(args, model)
    if model is not None and Path(model).is_dir():
        return models.resolve(model, args.model_name, args.prototxt)
    if model is not None and model not in MODELS:
        raise DreamerError(f"'{model}' is neither a model from `dreamvideo models list` nor a "
                           "model folder; give one of those, or -t FOLDER")
    return models.resolve(args.model_path, model or args.model_name, args.prototxt)


def _deploy_only(args, model: str | None) -> tuple[Path, Path]:
    """(deploy file, a name for the weights) of a model whose weights need not be here."""
    if args.prototxt and Path(args.prototxt).is_file():
        prototxt = Path(args.prototxt)
    elif model is not None and Path(model).is_dir():
        prototxt = models.deploy_file(Path(model), args.prototxt)
    elif args.model_path:
        prototxt = models.deploy_file(Path(args.model_path), args.prototxt)
    else:
        info = MODELS.get(model or "bvlc_googlenet")
        if info is None:
            raise DreamerError(f"'{model}' is neither a model from `dreamvideo models list` "
                               "nor a model folder; give one of those, or --prototxt FILE")
        found = [d / info.name / info.prototxt for d in models.search_dirs()
                 if (d / info.name / info.prototxt).is_file()]
        if not found:
            raise DreamerError(f"no deploy file of {info.name} here; `dreamvideo models "
                               f"download {info.name}` fetches it, or give --prototxt FILE")
        prototxt = found[0]
    return prototxt, prototxt.with_name("random weights")


def _check_sheet(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise DreamerError(f"--sheet {path}: name a .png or .jpg file")
    if path.exists() and not overwrite:
        raise DreamerError(f"{path} already exists; name another file, or add --overwrite")
    if not path.parent.is_dir():
        raise DreamerError(f"folder {path.parent} does not exist; make it first")


def _image(path_text: str | None, args):
    """The image as RGB uint8 (resized to -p, or the sheet's width), or None to list at
    --size; the sheet without an image dreams the demo's photo."""
    if path_text is None and not args.sheet:
        return None
    if path_text is None:
        from dreamer.cli.demo import find_photo

        path = find_photo()
    else:
        path = Path(path_text)
        if path.is_dir():
            frames = _frames(path)
            if not frames:
                raise DreamerError(f"{path} holds no images; give an image or a frames folder")
            path = frames[0]
        elif not path.is_file():
            raise DreamerError(f"image {path} does not exist")
    image = read_image(path)
    width = args.preview or (SHEET_WIDTH if args.sheet else None)
    if width and width != image.shape[1]:
        image = read_image(path, preview_size(image.shape[1], image.shape[0], width))
    return image


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DreamerError(f"--size {text}: write WIDTHxHEIGHT, e.g. 540x360") from None
    if not (0 < w <= 100_000 and 0 < h <= 100_000):
        raise DreamerError(f"--size {text}: width and height must be 1 to 100000")
    return h, w


def _print(rows, picked, model: str, width: int, height: int, everything: bool) -> None:
    print(f"layers of {model} at {width}x{height}: the blob (channels x height x width) and "
          "the receptive field (input pixels one position sees; stride: pixels between "
          "positions); * = on the sheet")
    for r in rows:
        if not everything and r.type in DETAIL_TYPES and r.name not in picked:
            continue
        blob = " x ".join(map(str, r.shape)) if r.fits else "does not fit this size"
        field = "whole image" if r.field is None else f"{r.field} px"
        mark = "*" if r.name in picked else " "
        print(f"{mark} {r.name:34s} {r.type:12s} {blob:22s} field {field}, stride {r.stride}")


def _sheet(net, image, layers: list[str], config: DreamConfig, seed: int, out: Path) -> None:
    started = time.monotonic()

    def on_layer(i: int, layer: str) -> None:
        print(f"dreaming {i + 1}/{len(layers)}: {layer} ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)

    sheet = dream_sheet(net, image, layers, config.mean, iter_n=config.iter_n,
                        octave_n=config.octave_n, octave_scale=config.octave_scale,
                        step_size=config.step_size, jitter=config.jitter, seed=seed,
                        on_layer=on_layer)
    part = out.with_name(f".{out.name}.part{os.getpid()}")
    try:
        sheet.save(part, format="PNG" if out.suffix.lower() == ".png" else "JPEG")
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    print(f"wrote {out} ({len(layers)} layers, {time.monotonic() - started:.0f} s)",
          file=sys.stderr)
