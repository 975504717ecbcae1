"""Model zoo: importing this package registers every built-in model."""

from prunekit.zoo.models import conv_lth, lenet, mlp, mobilenetv2_cifar, resnet_cifar, resnet_imagenet, vgg_cifar  # noqa: F401
from prunekit.zoo.models.registry import MODELS, create_model, default_input_shape, list_models, register_model
from prunekit.zoo.models.resnet_cifar import cifar_resnet

__all__ = ["MODELS", "cifar_resnet", "create_model", "default_input_shape", "list_models", "register_model"]
