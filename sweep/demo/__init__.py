"""The offline demo: a generated dataset and a base model pretrained on its source task."""
