"""The Caffe models DeepDream users dreamed with and that are still published: where each
comes from, how its file is checked, its licence and the layers people pick.

Checksums are sha1 of the downloaded file, as Caffe's own `download_model_binary.py`
checks them. Each says where it comes from (`sha1_source`). Where no one published one,
`weights_sha1` is None: the first download records the file's sha1 beside it
(`<file>.sha1`) and every later `verify` holds the file to it.

A deploy file fetched from GitHub is pinned to a commit, so it cannot change under a
user; `prototxt_sha256` is that file's digest where we hold the same file (the zoo goldens
in ../shared were made from exactly these).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BVLC = "http://dl.caffe.berkeleyvision.org/"
# Commits as ../shared/golden/zoo/README.md names them (short: GitHub resolves them)
BVLC_RAW = "https://raw.githubusercontent.com/BVLC/caffe/9b891540/models/"
PLACES365 = "http://places2.csail.mit.edu/models_places365/"
PLACES365_RAW = "https://raw.githubusercontent.com/CSAILVision/places365/06218620/"
RESNET_RAW = ("https://raw.githubusercontent.com/KaimingHe/deep-residual-networks/a7026cb6/"
              "prototxt/")
RESNET_PAGE = ("https://onedrive.live.com/?authkey=%21AAFW2-FVoxeVRck&id=4006CBB8476FF777"
               "%2117887&cid=4006CBB8476FF777 (linked from github.com/KaimingHe/"
               "deep-residual-networks)")
VGG_FILES = "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
VGG_GIST = "https://gist.githubusercontent.com/ksimonyan/"
SQUEEZE_RAW = ("https://raw.githubusercontent.com/DeepScale/SqueezeNet/"
               "b5c3f1a23713c8b3fd7b801d229f6b04c64374a5/")

BVLC_README = "the model's readme.md in BVLC/caffe models/ (sha1 field)"
OPENCV_LIST = "opencv_extra testdata/dnn/download_models.py"
UNPUBLISHED = "none published: recorded at the first download"


@dataclass(frozen=True)
class ModelInfo:
    name: str                     # the folder name, as in caffe/models/<name>/
    about: str                    # one line: what it was trained on, what it dreams
    caffemodel: str               # the weights file's name inside the folder
    prototxt: str                 # the deploy file's name inside the folder
    weights_url: str              # a direct link ("" when only a web page offers it)
    weights_sha1: str | None      # of the downloaded file; None: none published
    sha1_source: str              # where that checksum comes from
    size_mb: float                # about, of the download
    licence: str
    layers: tuple[str, ...]       # the layers people dream at, the usual one first
    prototxt_url: str | None = None  # None: it comes inside the archive
    prototxt_sha256: str | None = None
    archive: dict | None = None   # archive member -> file name, when weights_url is a tarball
    page: str = ""                # where to download by hand, when there is no direct link

    @property
    def download_name(self) -> str:
        """The file the download itself gives (the archive, or the weights)."""
        return Path(self.weights_url).name if self.archive else self.caffemodel


MODELS = {m.name: m for m in (
    ModelInfo(
        "bvlc_googlenet", "GoogLeNet on ImageNet, the original's model: dogs, eyes, pagodas",
        "bvlc_googlenet.caffemodel", "deploy.prototxt", BVLC + "bvlc_googlenet.caffemodel",
        "405fc5acd08a3bb12de8ee5e23a96bec22f08204", BVLC_README, 51, "unrestricted (BVLC)",
        ("inception_4c/output", "inception_3b/5x5_reduce", "inception_4d/output",
         "inception_4e/output", "inception_5a/output", "conv2/3x3"),
        prototxt_url=BVLC_RAW + "bvlc_googlenet/deploy.prototxt"),
    ModelInfo(
        "places205-googlenet", "GoogLeNet on Places205: buildings, arches, landscapes",
        "googlelet_places205_train_iter_2400000.caffemodel", "deploy_places205.protxt",
        "http://places.csail.mit.edu/model/googlenet_places205.tar.gz", None, UNPUBLISHED, 46,
        "research use (MIT CSAIL Places)",
        ("inception_4c/output", "inception_4d/output", "inception_5a/output"),
        archive={"googlenet_places205/googlelet_places205_train_iter_2400000.caffemodel":
                 "googlelet_places205_train_iter_2400000.caffemodel",
                 "googlenet_places205/deploy_places205.protxt": "deploy_places205.protxt"}),
    ModelInfo(
        "googlenet_places365", "GoogLeNet on Places365: rooms, streets, scenery",
        "googlenet_places365.caffemodel", "deploy_googlenet_places365.prototxt",
        PLACES365 + "googlenet_places365.caffemodel", None, UNPUBLISHED, 40,
        "CC BY (Places365)",
        ("inception_4c/output", "inception_4d/output", "inception_5a/output"),
        prototxt_url=PLACES365_RAW + "deploy_googlenet_places365.prototxt"),
    ModelInfo(
        "bvlc_reference_caffenet", "CaffeNet (AlexNet as Caffe trained it) on ImageNet",
        "bvlc_reference_caffenet.caffemodel", "deploy.prototxt",
        BVLC + "bvlc_reference_caffenet.caffemodel",
        "4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46", BVLC_README, 233, "unrestricted (BVLC)",
        ("conv5", "conv4", "conv3", "pool5"),
        prototxt_url=BVLC_RAW + "bvlc_reference_caffenet/deploy.prototxt",
        prototxt_sha256="922248a4d2f6aac1cc8e7e5dbd996cc2ecd3356480d67c198f6cf96b12311a04"),
    ModelInfo(
        "bvlc_alexnet", "AlexNet on ImageNet", "bvlc_alexnet.caffemodel", "deploy.prototxt",
        BVLC + "bvlc_alexnet.caffemodel", "9116a64c0fbe4459d18f4bb6b56d647b63920377",
        BVLC_README, 233, "unrestricted (BVLC)", ("conv5", "conv4", "conv3", "pool5"),
        prototxt_url=BVLC_RAW + "bvlc_alexnet/deploy.prototxt"),
    ModelInfo(
        "finetune_flickr_style", "CaffeNet fine-tuned on Flickr photo styles (Style20)",
        "finetune_flickr_style.caffemodel", "deploy.prototxt",
        BVLC + "finetune_flickr_style.caffemodel", "b61b5cef7d771b53b0c488e78d35ccadc073e9cf",
        BVLC_README, 217, "non-commercial (BVLC readme)", ("conv5", "conv4", "pool5"),
        prototxt_url=BVLC_RAW + "finetune_flickr_style/deploy.prototxt"),
    ModelInfo(
        "vgg16", "VGG 16-layer on ImageNet (ILSVRC-2014): fine, dense textures",
        "VGG_ILSVRC_16_layers.caffemodel", "VGG_ILSVRC_16_layers_deploy.prototxt",
        VGG_FILES + "VGG_ILSVRC_16_layers.caffemodel", None, UNPUBLISHED, 528, "CC BY 4.0 (VGG)",
        ("conv4_3", "conv5_3", "conv3_3", "conv5_1"),
        prototxt_url=VGG_GIST + "211839e770f7b538e2d8/raw/0067c9b32f60362c74f4c445a080beed06b07eb3/"
                                "VGG_ILSVRC_16_layers_deploy.prototxt"),
    ModelInfo(
        "vgg19", "VGG 19-layer on ImageNet (ILSVRC-2014)",
        "VGG_ILSVRC_19_layers.caffemodel", "VGG_ILSVRC_19_layers_deploy.prototxt",
        VGG_FILES + "VGG_ILSVRC_19_layers.caffemodel", None, UNPUBLISHED, 548, "CC BY 4.0 (VGG)",
        ("conv4_4", "conv5_4", "conv5_1", "conv3_4"),
        prototxt_url=VGG_GIST + "3785162f95cd2d5fee77/raw/"
                                "VGG_ILSVRC_19_layers_deploy.prototxt"),
    ModelInfo(
        "vgg16_places365", "VGG16 on Places365: architecture, interiors",
        "vgg16_places365.caffemodel", "deploy_vgg16_places365.prototxt",
        PLACES365 + "vgg16_places365.caffemodel", None, UNPUBLISHED, 518, "CC BY (Places365)",
        ("conv4_3", "conv5_3", "conv3_3"),
        prototxt_url=PLACES365_RAW + "deploy_vgg16_places365.prototxt",
        prototxt_sha256="e4eb335539b20e52664a41d76f6101a2a1223f71710361766614ba67dc3ab0a2"),
    ModelInfo(
        "resnet50", "ResNet-50 on ImageNet (MSRA)", "ResNet-50-model.caffemodel",
        "ResNet-50-deploy.prototxt", "", "b7c79ccc21ad0479cddc0dd78b1d20c4d722908d",
        OPENCV_LIST, 98, "MIT (deep-residual-networks)",
        ("res4f", "res4c", "res3d", "res5a"),
        prototxt_url=RESNET_RAW + "ResNet-50-deploy.prototxt",
        prototxt_sha256="2f8fb64f68c6bcda94eb2640f80aed94efb91664122e72a6b7587012cc57dedc",
        page=RESNET_PAGE),
    ModelInfo(
        "resnet101", "ResNet-101 on ImageNet (MSRA)", "ResNet-101-model.caffemodel",
        "ResNet-101-deploy.prototxt", "", None, UNPUBLISHED, 170,
        "MIT (deep-residual-networks)", ("res4b22", "res4b10", "res3b3", "res5a"),
        prototxt_url=RESNET_RAW + "ResNet-101-deploy.prototxt", page=RESNET_PAGE),
    ModelInfo(
        "resnet152", "ResNet-152 on ImageNet (MSRA)", "ResNet-152-model.caffemodel",
        "ResNet-152-deploy.prototxt", "", None, UNPUBLISHED, 230,
        "MIT (deep-residual-networks)", ("res4b35", "res4b20", "res3b7", "res5a"),
        prototxt_url=RESNET_RAW + "ResNet-152-deploy.prototxt", page=RESNET_PAGE),
    ModelInfo(
        "resnet152_places365", "ResNet-152 fine-tuned on Places365",
        "resnet152_places365.caffemodel", "deploy_resnet152_places365.prototxt",
        PLACES365 + "resnet152_places365.caffemodel", None, UNPUBLISHED, 230,
        "CC BY (Places365)", ("res4b35", "res4b20", "res5a"),
        prototxt_url=PLACES365_RAW + "deploy_resnet152_places365.prototxt"),
    ModelInfo(
        "nin_imagenet", "Network in Network on ImageNet: small, fast, bold shapes",
        "nin_imagenet.caffemodel", "deploy.prototxt",
        "https://www.dropbox.com/s/0cidxafrb2wuwxw/nin_imagenet.caffemodel?dl=1",
        "8e89c8fcd46e02780e16c867a5308e7bb7af0803",
        "the model zoo gist d802a5849de39225bcc6 (readme.md)", 29, "non-commercial (gist)",
        ("cccp6", "cccp7", "cccp4", "pool3"),
        prototxt_url="https://raw.githubusercontent.com/stephenyan1231/caffe-public/a30fe3a8/"
                     "models/nin_imagenet/deploy.prototxt",
        prototxt_sha256="8094f3d1f19807b1f241c58c29dec4198aec4db61a59069ddc37aee1de97414c"),
    ModelInfo(
        "squeezenet_v1.0", "SqueezeNet 1.0 on ImageNet: tiny and quick",
        "squeezenet_v1.0.caffemodel", "deploy.prototxt",
        SQUEEZE_RAW + "SqueezeNet_v1.0/squeezenet_v1.0.caffemodel", None, UNPUBLISHED, 4.8,
        "BSD 2-clause (DeepScale)", ("fire7/concat", "fire5/concat", "fire9/concat"),
        prototxt_url=SQUEEZE_RAW + "SqueezeNet_v1.0/deploy.prototxt"),
    ModelInfo(
        "squeezenet_v1.1", "SqueezeNet 1.1 on ImageNet: tiny and quickest",
        "squeezenet_v1.1.caffemodel", "deploy.prototxt",
        SQUEEZE_RAW + "SqueezeNet_v1.1/squeezenet_v1.1.caffemodel",
        "3397f026368a45ae236403ccc81cfcbe8ebe1bd0", OPENCV_LIST, 4.7,
        "BSD 2-clause (DeepScale)", ("fire7/concat", "fire5/concat", "fire9/concat"),
        prototxt_url=SQUEEZE_RAW + "SqueezeNet_v1.1/deploy.prototxt"),
)}
