"""Model zoo and datasets."""

from prunekit.zoo.checkpoints import load_weights
from prunekit.zoo.data import DataBundle, dataset_info, get_loaders, image_folder_loaders, list_datasets, load_dataset
from prunekit.zoo.models import MODELS, cifar_resnet, create_model, default_input_shape, list_models, register_model

__all__ = [
    "MODELS", "DataBundle", "cifar_resnet", "create_model", "dataset_info", "default_input_shape", "get_loaders",
    "image_folder_loaders", "list_datasets", "list_models", "load_dataset", "load_weights", "register_model",
]
