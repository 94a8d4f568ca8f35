"""An app whose module imports a module that does not exist (issue 20)."""

import no_such_module_inside_the_app  # noqa: F401

app = None
