"""Training: preference losses (pure), LoRA adapters, one LoRA training loop, DPO and SFT on it, EFT data.

`LOSS_TYPES` names the preference losses `losses.dpo_loss` implements; adding one touches `losses.py` and this tuple.
"""

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "rpo")
# What an iteration trains on its pairs: dpo = the preference loss above; sft = the chosen answers only (sft_chosen.py)
OBJECTIVES = ("dpo", "sft")

# What DPO training writes into an iteration folder (also read by the report)
REFERENCE_FILE = "reference_logps.jsonl"
HELDOUT_REFERENCE_FILE = "reference_logps_heldout.jsonl"  # the held-out pairs' (train.holdout)
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "train_summary.json"
# LoRA weights + optimizer state every train.checkpoint_every steps (training/loop.py); removed once the iteration ends
CHECKPOINT_FILE = "train_checkpoint.safetensors"
