"""REACT customization of CLIP: strategies, the gamma-positive loss, data, the training and eval CLIs."""
