//! CLIP's BPE tokenizer from an HF `tokenizer.json`, via the `tokenizers` crate (pure-Rust
//! regex backend, so native and wasm tokenize identically).

use tokenizers::Tokenizer;

use crate::Error;

/// Token ids for prompts, as CLIPSeg's processor makes them (BOS ... EOS).
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
        let eos = inner
            .token_to_id("<|endoftext|>")
            .ok_or_else(|| Error::Tokenizer("tokenizer.json has no <|endoftext|> token: not a CLIP tokenizer".into()))?;
        Ok(Self { inner, eos })
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
