"""One trainer for every model (design.md section 2: train/)."""
