"""The ONNX load-shaving model, the script that trains it on the simulator, and its model card."""
