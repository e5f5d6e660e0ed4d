"""DeepDreamVideo: deepdream on every frame of a video, Caffe models run by PyTorch."""

__version__ = "0.1.0"
