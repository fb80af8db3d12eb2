"""Model cards of distilled students and fine-tuned models: every fact the
card states comes from the run's report."""

from minilm_tf.training.model_cards import distillation_card, finetune_card

DISTILL_REPORT = {
    "config": {"teacher": "/some/where/all-minilm-l6-v2", "objective": "minilmv2",
               "num_relation_heads": 48, "teacher_layer": -2,
               "student": {"num_layers": 3, "hidden_dim": 384, "num_heads": 12},
               "train": {"batch_size": 32, "precision": "mixed_bfloat16"},
               "data": {"seq_length": 128}},
    "steps": 200, "tokens_seen": 819200, "teacher_params": 22713216,
    "student_params": 17389824,
    "student_init": {"mode": "teacher_layers", "teacher_layers": [0, 2, 5]},
    "corpus": {"sources": {"/data/my_corpus": {"documents": 12, "tokens": 3456}}},
    "heldout_loss_before": {"loss": 1.25, "qk_relation_loss": 0.5},
    "heldout_loss_after": {"loss": 0.5, "qk_relation_loss": 0.125},
}


def test_distillation_card_states_the_run():
    card = distillation_card(DISTILL_REPORT, "my_student")
    for fact in ("# my_student", "`all-minilm-l6-v2` (22,713,216 parameters)",
                 "3 layers x 384 hidden x 12 heads (17,389,824 parameters)",
                 "`minilmv2` (teacher layer -2, 48 relation heads)",
                 "`teacher_layers`, teacher layers [0, 2, 5]",
                 "200 x 32 x 128 tokens = 819,200 tokens", "mixed_bfloat16",
                 "`my_corpus`: 12 documents, 3,456 tokens",
                 "| loss | 1.2500 | 0.5000 |", "| qk_relation_loss | 0.5000 | 0.1250 |",
                 'minilm_tf.load_encoder("my_student")', "tools/export_hf.py --model my_student"):
        assert fact in card, fact
    assert "/some/where" not in card and "/data" not in card  # no local paths


def test_undistilled_student_says_so():
    report = dict(DISTILL_REPORT, steps=0, tokens_seen=0, heldout_loss_before=None,
                  heldout_loss_after=None)
    assert "not measured (no distillation steps)" in distillation_card(report)


def test_finetune_card_lists_metrics_settings_and_labels():
    report = {"model": "/x/runs/student", "task": "rotten_tomatoes",
              "task_kind": "classification", "label_vocab": ["rotten", "fresh"],
              "metrics": {"validation": {"accuracy": 0.758, "f1": 0.786},
                          "test": {"accuracy": 0.7479, "f1": 0.7789}},
              "hyperparameters": {"epochs": 2, "learning_rate": 1e-4, "seed": 3}}
    card = finetune_card(report)
    for fact in ("`student` fine-tuned with minilm_tf on `rotten_tomatoes` (classification)",
                 "| split | accuracy | f1 |", "| validation | 0.7580 | 0.7860 |",
                 "| test | 0.7479 | 0.7789 |", "- epochs: 2", "- seed: 3",
                 "labels (in the order of the outputs): rotten, fresh", "load_finetuned"):
        assert fact in card, fact
    assert "task-stage distillation" not in card
    report["task_distillation"] = {"teacher_run": "/x/runs/teacher_rt", "alpha": 0.5,
                                   "teacher_model": "all-minilm-l6-v2", "temperature": 2.0,
                                   "teacher_class": "BertTextClassifier"}
    assert ("- task-stage distillation: the logits of the fine-tuned teacher "
            "`all-minilm-l6-v2` (BertTextClassifier) besides the labels, weight 0.5000, "
            "temperature 2.0000") in finetune_card(report)


def test_finetune_card_of_a_generator():
    report = {"model": "teacher", "task": "bbc_headlines", "config": {"epochs": 3},
              "results": {"test": {"metrics": {"rouge1": 30.5, "bleu": 7.25}}}}
    card = finetune_card(report)
    assert "(seq2seq)" in card and "| test | 7.2500 | 30.5000 |" in card
    assert "load_generation_model" in card
