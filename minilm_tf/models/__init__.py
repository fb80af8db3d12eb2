"""Encoders and the distiller.

- `loaded_encoder`: `LoadedEncoder`, a backbone with its tokenizer.
- `encoders`: `load_encoder` (alias `load_teacher`) from Hugging Face,
  keras-hub or Model Garden sources, and `save_encoder`.
- `model_garden` (+ `model_garden_config`): TF Model Garden BERT encoders,
  both directions.
- `students`: `build_student` (from teacher layers or random) and `count_params`.
- `distiller`: `MiniLMDistiller`, the Keras model trained with `fit`.
"""
