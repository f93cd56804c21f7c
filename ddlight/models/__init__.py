"""Plain ``nn.Module`` networks; every one exposes ``embed(x)`` and ``num_classes``."""

from ddlight.models.alexnet import AlexNet
from ddlight.models.convnet import ConvNet, compile_training, use_lean_graph
from ddlight.models.mlp import MLP
from ddlight.models.resnet import ResNet18
from ddlight.models.vgg import VGG11

__all__ = ["AlexNet", "ConvNet", "MLP", "ResNet18", "VGG11", "compile_training", "use_lean_graph"]
