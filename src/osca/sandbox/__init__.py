"""Running candidate code in Docker sandboxes.

Importing this package does not import docker; the Docker SDK loads on first use.
"""

from .image import build_image, docker_client, ensure_image, image_tag, recipe_dir

__all__ = [
    "build_image",
    "docker_client",
    "ensure_image",
    "image_tag",
    "recipe_dir",
]
