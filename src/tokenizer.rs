//! CLIP's BPE tokenizer from an HF `tokenizer.json`, via the `tokenizers` crate (pure-Rust
//! regex backend, so native and wasm tokenize identically).

use tokenizers::Tokenizer;

use crate::Error;

/// CLIP's word-splitting regex, as transformers' converter writes it.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Token ids for prompts, as CLIPSeg's processor makes them (BOS ... EOS).
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    eos: u32,
}

impl ClipTokenizer {
    /// Parses `tokenizer.json` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        // Length limits are the model's business (`encode`), not the file's.
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        inner.with_padding(None);
        let eos = inner.token_to_id("<|endoftext|>").ok_or_else(|| {
            Error::Tokenizer(
                "tokenizer.json has no <|endoftext|> token: not a CLIP tokenizer".into(),
            )
        })?;
        Ok(Self { inner, eos })
    }

    /// Builds the tokenizer from `vocab.json` + `merges.txt` (HF folders that predate
    /// `tokenizer.json`), the way transformers' `CLIPConverter` assembles it.
    pub fn from_vocab_merges(vocab_json: &[u8], merges_txt: &str) -> Result<Self, Error> {
        let vocab: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(vocab_json)
            .map_err(|e| Error::Tokenizer(format!("vocab.json: {e}")))?;
        let id = |token: &str| {
            vocab
                .get(token)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    Error::Tokenizer(format!("vocab.json has no {token}: not a CLIP vocabulary"))
                })
        };
        let (bos, eos) = (id("<|startoftext|>")?, id("<|endoftext|>")?);
        let merges: Vec<&str> = merges_txt
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .collect();
        let special = |id: u64, content: &str| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        };
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [special(bos, "<|startoftext|>"), special(eos, "<|endoftext|>")],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_PATTERN}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
            "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eos],
                "cls": ["<|startoftext|>", bos], "trim_offsets": false, "add_prefix_space": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
                "continuing_subword_prefix": "", "end_of_word_suffix": "</w>", "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges},
        });
        Self::from_bytes(json.to_string().as_bytes())
    }

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String, Error> {
        self.inner
            .to_string(false)
            .map_err(|e| Error::Tokenizer(format!("serialising tokenizer: {e}")))
    }

    /// Ids of `prompt` with BOS and EOS. Past `max_len` tokens the prompt is cut and EOS kept
    /// last, as HF's `truncation=True, max_length=77` does (the model would reject more).
    pub fn encode(&self, prompt: &str, max_len: usize) -> Result<Vec<u32>, Error> {
        let encoding = self
            .inner
            .encode(prompt, true)
            .map_err(|e| Error::Tokenizer(format!("can't tokenize prompt: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > max_len && max_len >= 2 {
            ids.truncate(max_len - 1);
            ids.push(self.eos);
        }
        Ok(ids)
    }
}
