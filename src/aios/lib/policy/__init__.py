"""The Cedar policy engine (``engine``) and where its policy files live (``files``)."""
