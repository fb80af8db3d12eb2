"""Pre-training corpora: reading text, in-graph tokenisation and packing."""

from minilm_tf.data.corpus import (
    TOKENIZATIONS,
    CorpusStats,
    build_pretraining_dataset,
    builtin_corpus,
    count_tokens,
    load_tfds_texts,
    padding_fraction,
    read_text_sources,
    split_heldout,
)
