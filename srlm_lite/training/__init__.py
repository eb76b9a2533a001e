"""Training: preference losses (pure), LoRA adapters, one LoRA training loop, DPO and SFT on it, EFT data.

`LOSS_TYPES` names the preference losses `losses.dpo_loss` implements; adding one touches `losses.py` and this tuple.
"""

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "rpo")

# What DPO training writes into an iteration folder (also read by the report)
REFERENCE_FILE = "reference_logps.jsonl"
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "train_summary.json"
