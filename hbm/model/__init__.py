"""Stage 2, model: the hierarchical logistic model, its centring rule and likelihood kernels."""
