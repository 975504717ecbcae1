"""Model zoo and datasets."""

from prunekit.zoo.models import MODELS, cifar_resnet, create_model, default_input_shape, list_models, register_model

__all__ = ["MODELS", "cifar_resnet", "create_model", "default_input_shape", "list_models", "register_model"]
