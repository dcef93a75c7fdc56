"""CLIPDraw engine: scenes of cubic strokes, a differentiable rasterizer, and CLIP guidance."""
from .scene import Scene, SceneError, Shape, Subpath

__version__ = "0.1.0"
__all__ = ["Scene", "SceneError", "Shape", "Subpath", "__version__"]
