"""Files: images (decode with caps, encode), safetensors read without pickle (`safetensors_file`),
model files with their architecture (`serialize`), VGG weight sources (`weights`), contact sheets."""
