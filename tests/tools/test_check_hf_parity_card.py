"""tools/check_hf_parity.py writes what it measured into the export's model
card: one "## Export parity" section, replaced on a rerun, the rest kept."""

import sys

from locations import TOOLS_DIR

sys.path.insert(0, TOOLS_DIR)
import check_hf_parity  # noqa: E402


def _report(diff, ok=True):
    return {"libraries": {"torch": "2.13.0", "transformers": "5.24.0"}, "texts": 10,
            "token_ids": {"identical": 10, "of": 10}, "tolerance": 1e-5,
            "logits_max_abs_diff": diff, "logits_max_abs": 2.2, "same_predicted_label": 10,
            "ok": ok, "failures": [] if ok else [f"logits differ by {diff:.3g} > 1e-05"]}


def test_the_card_gets_one_parity_section_replaced_on_a_rerun(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# model\n\nintro\n\n## Usage\n\ncode\n")
    assert check_hf_parity.update_card(str(tmp_path), _report(4.8e-7))
    text = card.read_text()
    assert text.startswith("# model\n\nintro\n\n## Usage\n\ncode\n\n## Export parity\n")
    assert "torch 2.13.0, transformers 5.24.0" in text and "(passed)" in text
    assert "| logits, max abs difference | 4.8e-07 (tolerance 1e-05; logits up to 2.2) |" in text
    assert "| same predicted label | 10 / 10 |" in text

    # A section that is not last is replaced in place; what follows it stays.
    card.write_text(text + "\n## Notes\n\nkept\n")
    check_hf_parity.update_card(str(tmp_path), _report(3e-4, ok=False))
    again = card.read_text()
    assert again.count("## Export parity") == 1 and "4.8e-07" not in again
    assert "FAILED: logits differ by 0.0003 > 1e-05" in again
    assert "## Notes\n\nkept" in again and "## Usage\n\ncode" in again


def test_an_export_without_a_card_is_left_alone(tmp_path):
    assert not check_hf_parity.update_card(str(tmp_path), _report(1e-7))
    assert list(tmp_path.iterdir()) == []


def test_encoder_sections_name_every_check(tmp_path):
    report = {"libraries": {"torch": "2.13.0"}, "texts": 14, "tolerance": 1e-5,
              "embedding_tolerance": 1e-5, "token_ids": {"identical": 14, "of": 14},
              "last_hidden_state_max_abs_diff": 1.9e-6, "pooler_output_max_abs_diff": 1.6e-7,
              "sentence_transformers": {"embedding_max_abs_diff": 1.1e-7}, "ok": True,
              "failures": []}
    section = check_hf_parity.parity_section(report)
    for row in ("| token ids (Hugging Face tokenizer = keras-hub) | 14 / 14 texts identical |",
                "| last hidden state, max abs difference | 1.9e-06 (tolerance 1e-05) |",
                "| pooler output, max abs difference | 1.6e-07 |",
                "| sentence-transformers embedding, max abs difference | 1.1e-07 "
                "(tolerance 1e-05) |"):
        assert row in section, row
