"""Tokenizers that also return every token's character span in the original
text (SQuAD needs it to map predicted tokens back to answers):

* `OffsetWordPieceTokenizer`: a pure-Python BERT basic + WordPiece tokenizer
  with the ids of keras-hub's `BertTokenizer` / `WordPieceTokenizer`;
* `OffsetSentencePieceTokenizer`: SentencePiece (the `sentencepiece`
  library's own spans) with the ids of keras-hub's `XLMRobertaTokenizer`.

Both give `cls_id`, `sep_id`, `pad_id` and `pair_separator`, the ids between
the question and the context of a window (`[SEP]` for BERT, `</s></s>` for
XLM-R)."""

from __future__ import annotations

import os
import unicodedata
from typing import Sequence


_WHITESPACE = r"[ \t\n\r\f]|\p{Cc}|\p{Cf}"
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|[\p{P}]"
_CJK = (
    r"[\u4E00-\u9FFF]|[\u3400-\u4DBF]|[\U00020000-\U0002A6DF]|[\U0002A700-\U0002B73F]"
    r"|[\U0002B740-\U0002B81F]|[\U0002B820-\U0002CEAF]|[\uF900-\uFAFF]|[\U0002F800-\U0002FA1F]"
)
# Unicode Default_Ignorable_Code_Point ranges, dropped by NFKC_Casefold.
_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_MAX_BYTES_PER_WORD = 100  # tf_text.FastWordpieceTokenizer: longer -> [UNK]


def _is_default_ignorable(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _DEFAULT_IGNORABLE_RANGES)


def _casefold(text: str) -> str:
    """NFKC_Casefold, as ``tf_text.case_fold_utf8``."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _is_default_ignorable(c))


class OffsetWordPieceTokenizer:
    """BERT basic + WordPiece tokenizer returning original-text char offsets.

    Reproduces ``keras_hub.tokenizers.WordPieceTokenizer`` (and therefore
    ``keras_hub.models.BertTokenizer``) with ``split=True``: optional NFD +
    removal of Mn accents, split on ASCII whitespace / control / format
    characters (dropped) and punctuation / CJK characters (kept), NFKC
    case-folding of each word, greedy longest-match WordPiece with ``##``
    continuation and ``[UNK]`` for words that cannot be covered or are longer
    than 100 UTF-8 bytes.

    ``tokenize_with_offsets`` also returns, for every token, the
    ``[start, end)`` character span in the original (un-normalised) string.
    Pieces of a word get their own sub-spans; when normalisation of a word
    is not character-wise (rare NFKC compositions) or the word is ``[UNK]``,
    all its pieces get the span of the whole word.

    Args:
      vocabulary: path to a ``vocab.txt`` or list of tokens.
      lowercase: case-fold words (uncased models).
      strip_accents: remove accents; ``None`` follows ``lowercase`` (the
        original BERT / Hugging Face uncased behaviour). Note keras-hub's own
        default is ``strip_accents=False``; :meth:`from_keras_hub` copies the
        setting of a given keras-hub tokenizer.
    """

    def __init__(
        self,
        vocabulary,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        split_on_cjk: bool = True,
        suffix_indicator: str = "##",
        oov_token: str = "[UNK]",
        special_tokens: Sequence[str] | None = None,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
    ):
        import regex  # dependency of keras-hub; needed for \p{..} classes

        if isinstance(vocabulary, (str, os.PathLike)):
            with open(vocabulary, "r", encoding="utf-8") as f:
                vocabulary = [line.rstrip() for line in f]
        self.vocabulary = list(vocabulary)
        self.token_to_id = {t: i for i, t in enumerate(self.vocabulary)}
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.split_on_cjk = split_on_cjk
        self.suffix_indicator = suffix_indicator
        self.oov_token = oov_token
        self.special_tokens = tuple(special_tokens or ())
        for tok in (oov_token, cls_token, sep_token, pad_token):
            if tok not in self.token_to_id:
                raise ValueError(f"Token {tok!r} is not in the vocabulary.")
        self.oov_id = self.token_to_id[oov_token]
        self.cls_id = self.token_to_id[cls_token]
        self.sep_id = self.token_to_id[sep_token]
        self.pad_id = self.token_to_id[pad_token]
        split = [_WHITESPACE, _PUNCTUATION] + ([_CJK] if split_on_cjk else [])
        keep = [_PUNCTUATION] + ([_CJK] if split_on_cjk else [])
        if self.special_tokens:
            special = "|".join(regex.escape(t) for t in self.special_tokens)
            split.insert(0, special)
            keep.insert(0, special)
        self._split_re = regex.compile("|".join(split))
        self._keep_re = regex.compile("|".join(keep))
        self._word_cache: dict[str, list[tuple[int, int, int]]] = {}

    @classmethod
    def from_keras_hub(cls, tokenizer) -> "OffsetWordPieceTokenizer":
        """Mirrors the settings of a keras-hub ``WordPieceTokenizer``/``BertTokenizer``."""
        if not getattr(tokenizer, "split", True):
            raise NotImplementedError("keras-hub tokenizers with split=False are not supported")
        special = None
        if getattr(tokenizer, "special_tokens_in_strings", False):
            special = list(getattr(tokenizer, "special_tokens", []) or [])
            special += list(getattr(tokenizer, "_init_special_tokens", None) or [])
        return cls(
            tokenizer.get_vocabulary(),
            lowercase=tokenizer.lowercase,
            strip_accents=bool(tokenizer.strip_accents),
            split_on_cjk=tokenizer.split_on_cjk,
            suffix_indicator=tokenizer.suffix_indicator,
            oov_token=tokenizer.oov_token,
            special_tokens=special,
            cls_token=getattr(tokenizer, "cls_token", "[CLS]"),
            sep_token=getattr(tokenizer, "sep_token", "[SEP]"),
            pad_token=getattr(tokenizer, "pad_token", "[PAD]"),
        )

    # -- word piece ------------------------------------------------------------
    def _wordpiece(self, word: str) -> list[tuple[int, int, int]]:
        """[(id, start, end)] over `word`; [(oov, 0, len)] when not coverable."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        if len(word.encode("utf-8")) > _MAX_BYTES_PER_WORD:
            pieces = [(self.oov_id, 0, len(word))]
        else:
            pieces = []
            start = 0
            while start < len(word):
                end = len(word)
                current = None
                while start < end:
                    sub = word[start:end]
                    if start > 0:
                        sub = self.suffix_indicator + sub
                    if sub in self.token_to_id:
                        current = self.token_to_id[sub]
                        break
                    end -= 1
                if current is None:
                    pieces = [(self.oov_id, 0, len(word))]
                    break
                pieces.append((current, start, end))
                start = end
        if len(self._word_cache) < 200_000:
            self._word_cache[word] = pieces
        return pieces

    # -- public ----------------------------------------------------------------
    def tokenize_with_offsets(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """Returns (token ids, start chars, end chars) for `text`."""
        # 1. Optional accent stripping, keeping norm-char -> orig-char index.
        if self.strip_accents and not text.isascii():
            chars, cmap = [], []
            for i, c in enumerate(text):
                for d in unicodedata.normalize("NFD", c):
                    if unicodedata.category(d) != "Mn":
                        chars.append(d)
                        cmap.append(i)
            norm = "".join(chars)
        else:
            norm = text
            cmap = range(len(text))
        # 2. Split into words (same semantics as tf_text.regex_split).
        spans = []
        pos = 0
        for m in self._split_re.finditer(norm):
            if m.start() > pos:
                spans.append((pos, m.start()))
            if self._keep_re.fullmatch(m.group()):
                spans.append((m.start(), m.end()))
            pos = m.end()
        if pos < len(norm):
            spans.append((pos, len(norm)))
        # 3. Case fold each word and word-piece it.
        ids, starts, ends = [], [], []
        for a, b in spans:
            word = norm[a:b]
            fmap = None  # folded-char -> orig-char index, when char-wise
            if self.lowercase and word not in self.special_tokens:
                folded = _casefold(word)
                if word.isascii():
                    fmap = cmap[a:b]
                else:
                    per_char = [_casefold(c) for c in word]
                    if "".join(per_char) == folded:
                        fmap = [cmap[a + j] for j, p in enumerate(per_char) for _ in p]
            else:
                folded = word
                fmap = cmap[a:b]
            if not folded:
                continue
            w_start, w_end = cmap[a], cmap[b - 1] + 1
            for tid, s, e in self._wordpiece(folded):
                ids.append(tid)
                if fmap is None or tid == self.oov_id:
                    starts.append(w_start)
                    ends.append(w_end)
                else:
                    starts.append(fmap[s])
                    ends.append(fmap[e - 1] + 1)
        return ids, starts, ends

    kind = "wordpiece"

    @property
    def pair_separator(self) -> tuple[int, ...]:
        return (self.sep_id,)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_with_offsets(text)[0]

    def __call__(self, text: str) -> list[int]:
        return self.tokenize(text)


class OffsetSentencePieceTokenizer:
    """XLM-R's SentencePiece tokenizer returning original-text char offsets.

    Encodes with the `sentencepiece` library (the same model keras-hub's
    ``XLMRobertaTokenizer`` runs in the graph) and maps its ids into the
    fairseq id space that tokenizer uses: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
    ``<unk>`` 3, every other piece its SentencePiece id + 1, ``<mask>`` last.
    A token's span is the piece's span in the original text (the library
    tracks it through its normalisation), without the whitespace that the
    piece's leading ``▁`` stands for.

    Args:
      proto: the serialised SentencePiece model (``XLMRobertaTokenizer.proto``
        or the bytes of a ``sentencepiece.bpe.model`` file).
    """

    kind = "sentencepiece"
    cls_id, pad_id, sep_id, oov_id = 0, 1, 2, 3

    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.proto = bytes(proto)
        self._spm = spm.SentencePieceProcessor(model_proto=self.proto)
        n = self._spm.get_piece_size()
        self.vocabulary = (["<s>", "<pad>", "</s>", "<unk>"]
                           + [self._spm.id_to_piece(i) for i in range(3, n)] + ["<mask>"])
        self._unk = self._spm.unk_id()

    @classmethod
    def from_keras_hub(cls, tokenizer) -> "OffsetSentencePieceTokenizer":
        proto = tokenizer.proto
        if isinstance(proto, str):  # a path
            with open(proto, "rb") as f:
                proto = f.read()
        return cls(proto)

    @property
    def pair_separator(self) -> tuple[int, ...]:
        return (self.sep_id, self.sep_id)

    def tokenize_with_offsets(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """Returns (token ids, start chars, end chars) for `text`."""
        encoded = self._spm.encode(text, return_type="proto")
        # Piece spans are UTF-8 byte offsets into `text`: map them to chars.
        char_at = [0] * (len(text.encode("utf-8")) + 1)
        pos = 0
        for i, ch in enumerate(text):
            width = len(ch.encode("utf-8"))
            char_at[pos:pos + width] = [i] * width
            pos += width
        char_at[pos] = len(text)
        ids, starts, ends = [], [], []
        for piece in encoded.pieces:
            ids.append(self.oov_id if piece.id == self._unk else piece.id + 1)
            start, end = char_at[piece.begin], char_at[piece.end]
            while start < end and text[start].isspace():
                start += 1
            starts.append(start)
            ends.append(end)
        return ids, starts, ends

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_with_offsets(text)[0]

    def __call__(self, text: str) -> list[int]:
        return self.tokenize(text)


def get_offset_tokenizer(tokenizer_or_vocab, lowercase: bool = True):
    """An offset tokenizer from a keras-hub tokenizer (WordPiece or XLM-R's
    SentencePiece), an offset tokenizer, a vocab path or a token list (then
    ``lowercase`` applies, accents stripped iff lowercase)."""
    if isinstance(tokenizer_or_vocab, (OffsetWordPieceTokenizer, OffsetSentencePieceTokenizer)):
        return tokenizer_or_vocab
    import keras_hub

    if isinstance(tokenizer_or_vocab, keras_hub.models.XLMRobertaTokenizer):
        return OffsetSentencePieceTokenizer.from_keras_hub(tokenizer_or_vocab)
    if hasattr(tokenizer_or_vocab, "get_vocabulary") and hasattr(tokenizer_or_vocab, "lowercase"):
        return OffsetWordPieceTokenizer.from_keras_hub(tokenizer_or_vocab)
    return OffsetWordPieceTokenizer(tokenizer_or_vocab, lowercase=lowercase)


# =============================================================================
# Features
# =============================================================================
