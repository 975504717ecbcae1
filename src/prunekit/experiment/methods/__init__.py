"""What each pruning method does in a run: ``run_<method>(ctx) -> MethodResult``.

The methods themselves (name, recipe section, runner) are declared in
:data:`prunekit.experiment.method_sections.METHODS`; this package holds the runners it names.
"""

from prunekit.experiment.method_sections import METHODS

__all__ = ["METHODS"]
