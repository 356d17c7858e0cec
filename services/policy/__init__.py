"""Policy edges: loading and validating policy documents from files, and the CLI verbs."""
