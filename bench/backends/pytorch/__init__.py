"""The PyTorch engine: eager sessions (`eager`), greedy generation with a KV cache (`generate`) and
torch.compile (`compile`)."""
