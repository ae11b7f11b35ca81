"""Front-ends: Norse / PyTorch modules, state_dicts and Lightning checkpoints to NIR."""
