"""MLQA's official evaluation (hand-computed cases per language), XLM-R's
SentencePiece offset tokenizer (ids equal keras-hub's XLMRobertaTokenizer,
spans point into the original text) and SQuAD windows in XLM-R's layout."""

import numpy as np
import pytest

from minilm_tf.tasks import question_answering
from minilm_tf.tasks.question_answering import mlqa, mlqa_metrics
from minilm_tf.tasks.question_answering.tokenizer import OffsetSentencePieceTokenizer
from toy_tasks import SQUAD_FIXTURE as FIXTURE, squad_texts, squad_xlmr_tokenizer


@pytest.fixture(scope="module")
def xlmr():
    return squad_xlmr_tokenizer()


# ============================================================== evaluation
@pytest.mark.parametrize("language,text,expected", [
    ("en", "The Eiffel Tower, in Paris!", "eiffel tower in paris"),
    ("es", "¿La casa de los padres?", "casa de padres"),
    ("de", "Der Hund und die Katze des Nachbarn.", "hund und katze nachbarn"),
    ("vi", "Những cái bàn của tôi", "bàn tôi"),
    # Arabic: every ال is removed, also inside a word.
    ("ar", "الكتاب الجديد", "كتاب جديد"),
    ("hi", "यह एक किताब है।", "यह एक किताब है"),  # no articles; । is punctuation
    # Chinese: punctuation removed, then every CJK character its own token;
    # runs of other characters split on whitespace.
    ("zh", "北京大学（1898年）", "北 京 大 学 1898 年"),
    ("en", "«Quoted» — “curly”", "quoted curly"),
])
def test_mlqa_normalisation_hand_computed(language, text, expected):
    assert mlqa_metrics.normalize_answer(text, language) == expected


def test_mlqa_scores_hand_computed():
    gold = [
        {"id": "q1", "answers": {"text": ["北京大学"]}},
        {"id": "q2", "answers": {"text": ["清华", "清华大学"]}},
        {"id": "q3", "answers": {"text": ["上海"]}},
    ]
    # q1: 北京 vs 北京大学: 2 common of 2 predicted / 4 gold: P 1, R 0.5 -> F1 2/3.
    # q2: exact on the second gold answer.  q3: no prediction: 0, counted.
    result = mlqa_metrics.mlqa_evaluate(gold, {"q1": "北京", "q2": "清华大学。"}, "zh")
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (2 / 3 + 1) / 3)
    assert result["total"] == 3 and result["missing"] == 1
    # The same pair under SQuAD's whitespace rules is one token each: no overlap.
    squad = question_answering.squad_evaluate(gold[:1], {"q1": "北京"}, version_2=False)
    assert squad["f1"] == 0.0
    assert mlqa_metrics.f1_score("El perro", "un perro", "es") == 1.0
    assert mlqa_metrics.f1_score("El perro", "un perro", "en") == 0.5
    with pytest.raises(ValueError, match="no language 'fr'"):
        mlqa_metrics.normalize_answer("x", "fr")


def test_mlqa_options():
    opts = mlqa.parse_options({"languages": "de, zh,de", "max_seq_length": 128})
    assert opts == {"train_language": "en", "languages": ["de", "zh"], "mlqa_dir": None}
    assert mlqa.parse_options(None)["languages"] == list(mlqa_metrics.MLQA_LANGUAGES)
    with pytest.raises(ValueError, match="no language 'fr'"):
        mlqa.parse_options({"languages": "en,fr"})
    with pytest.raises(ValueError, match="languages is empty"):
        mlqa.parse_options({"languages": ","})
    with pytest.raises(FileNotFoundError, match="mlqa_dir"):
        mlqa.parse_options({"mlqa_dir": "/no/such/dir"})


# ============================================================== tokenizer
def test_sentencepiece_ids_match_keras_hub(xlmr):
    tok = question_answering.get_offset_tokenizer(xlmr)
    assert isinstance(tok, OffsetSentencePieceTokenizer)
    assert tok.vocabulary == xlmr.get_vocabulary()
    texts = squad_texts() + [
        "Straße ﬁnance ½ 東京タワー naïve CAFÉ İstanbul 한국어",
        "  leading and  double  spaces ", "zzqx 🙂 unknown", "",
    ]
    batch = xlmr(texts)
    for i, text in enumerate(texts):
        ids = tok.tokenize(text)
        assert ids == [int(t) for t in xlmr(text)], text
        assert ids == [int(t) for t in batch[i]], text
    assert (tok.cls_id, tok.pad_id, tok.sep_id) == (
        xlmr.start_token_id, xlmr.pad_token_id, xlmr.end_token_id)
    assert tok.pair_separator == (xlmr.end_token_id, xlmr.end_token_id)


def test_sentencepiece_spans_are_the_pieces_in_the_original_text(xlmr):
    tok = question_answering.get_offset_tokenizer(xlmr)
    for text in squad_texts():
        ids, starts, ends = tok.tokenize_with_offsets(text)
        # Every non-space character is covered once, in order; a piece's span
        # is its own text (without the word-start marker) where the model's
        # normalisation leaves the text alone.
        covered = "".join(text[s:e] for s, e in zip(starts, ends))
        assert covered == "".join(text.split()), text
        for i, s, e in zip(ids, starts, ends):
            if i != tok.oov_id:
                assert text[s:e] == tok.vocabulary[i].lstrip("\u2581"), (text, i)
        assert starts == sorted(starts)


def test_windows_in_xlm_r_layout_round_trip_the_answers(xlmr):
    tok = question_answering.get_offset_tokenizer(xlmr)
    examples = question_answering.read_squad_json(FIXTURE)
    features, meta = question_answering.prepare_squad(examples, tok, max_seq_length=64,
                                                      doc_stride=16)
    answered = 0
    for f in range(len(meta)):
        e = examples[meta.example_index[f]]
        ids, mask = features["token_ids"][f], features["padding_mask"][f]
        n = int(mask.sum())
        q_len = len(tok.tokenize(e.question))
        assert ids[0] == tok.cls_id and list(ids[q_len + 1:q_len + 3]) == [2, 2]
        assert ids[n - 1] == tok.sep_id and (ids[n:] == tok.pad_id).all()
        ctx = meta.offsets[f][:, 0] >= 0
        assert not ctx[:q_len + 3].any() and ctx[q_len + 3:n - 1].all()
        s, t = int(features["start_positions"][f]), int(features["end_positions"][f])
        if s:
            answered += 1
            span = e.context[meta.offsets[f][s, 0]:meta.offsets[f][t, 1]]
            # The gold span, up to pieces that reach past it (SentencePiece
            # pieces may join a word with its neighbouring punctuation).
            assert e.answer_text in span and len(span) <= len(e.answer_text) + 2, (
                e.answer_text, span)
    assert answered >= 15


def test_qa_encoder_check():
    import export_fixtures
    from minilm_tf.tasks.question_answering.finetuned import check_encoder

    check_encoder(export_fixtures.architecture_encoder("xlm_roberta", sentence=False))
    with pytest.raises(NotImplementedError, match="WordPiece.*XLM-R SentencePiece.*"
                                                  "RobertaTokenizer"):
        check_encoder(export_fixtures.architecture_encoder("roberta", sentence=False))
