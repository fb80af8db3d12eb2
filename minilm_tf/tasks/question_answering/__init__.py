"""Extractive question answering (SQuAD v1.1 / v2.0, MLQA).

The pipeline, one module per step:

1. `examples`: read SQuAD-format JSON or TFDS into `SquadExample`s;
   `data`: a run's splits (held-out validation, subsampling) and options.
   `mlqa`: MLQA's seven languages (TFDS or the release files).
2. `tokenizer`: `OffsetWordPieceTokenizer` / `OffsetSentencePieceTokenizer`,
   keras-hub's WordPiece / XLM-R ids plus each token's character span;
   `features.prepare_squad`: sliding windows of question + context with
   start/end labels.
3. `model`: the span head over any backbone's sequence output, its loss.
4. `postprocess`: logits of all windows -> one answer per question;
   `metrics`: the official SQuAD EM / F1; `mlqa_metrics`: MLQA's, per
   language; `evaluation`: decoding and scoring for a model.
5. `finetuned`: the saved run (model, qa_config.json, vocabulary) and loading it.
"""

from minilm_tf.tasks.question_answering.data import (
    QAData,
    QAOptions,
    detect_version_2,
    load_qa_data,
    resolve_qa_options,
    tfds_name_for_task,
)
from minilm_tf.tasks.question_answering.evaluation import evaluate_qa, predict_logits
from minilm_tf.tasks.question_answering.examples import (
    MISMATCH_MODES,
    AnswerAlignmentError,
    SquadExample,
    SquadExamples,
    examples_from_records,
    load_squad_tfds,
    read_squad_json,
)
from minilm_tf.tasks.question_answering.features import (
    SquadFeatureMeta,
    model_inputs,
    prepare_squad,
)
from minilm_tf.tasks.question_answering.finetuned import (
    QA_CONFIG_FILE,
    load_finetuned_qa,
    save_qa_model,
)
from minilm_tf.tasks.question_answering.metrics import (
    compute_exact,
    compute_f1,
    exact_match_score,
    f1_score_v1,
    normalize_answer,
    squad_evaluate,
)
from minilm_tf.tasks.question_answering.model import (
    INPUT_NAMES,
    build_qa_model,
    compile_qa_model,
    make_qa_dataset,
    qa_loss,
)
from minilm_tf.tasks.question_answering.postprocess import postprocess
from minilm_tf.tasks.question_answering.mlqa_metrics import MLQA_LANGUAGES, mlqa_evaluate
from minilm_tf.tasks.question_answering.tokenizer import (
    OffsetSentencePieceTokenizer,
    OffsetWordPieceTokenizer,
    get_offset_tokenizer,
)
