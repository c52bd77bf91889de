//! Turns a growing list of token ids into text deltas: never half a character, and never text
//! that may turn out to be the start of a stop string. The deltas concatenate to the final text.

use crate::tokenizer::Tokenizer;
use crate::Result;

/// Incremental detokenizer with stop strings.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    stops: Vec<String>,
    ids: Vec<u32>,
    /// Text sent so far (the concatenated deltas).
    sent: String,
    stopped: bool,
}

impl<'a> TextStream<'a> {
    /// A stream decoding with `tokenizer`, ending before any of `stops`.
    pub fn new(tokenizer: &'a Tokenizer, stops: &[String]) -> Self {
        Self { tokenizer, stops: stops.to_vec(), ids: Vec::new(), sent: String::new(), stopped: false }
    }
    /// True once a stop string was generated.
    pub fn stopped(&self) -> bool {
        self.stopped
    }
    /// Adds a token; returns the new text that is safe to send (may be empty).
    pub fn push(&mut self, token: u32) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        self.ids.push(token);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        if let Some(cut) = self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
            self.stopped = true;
            return Ok(self.advance(&text[..cut]));
        }
        // Hold back a suffix that could still grow into a stop string.
        let hold = crate::generate::pending_stop_len(&text, &self.stops);
        Ok(self.advance(&text[..text.len() - hold]))
    }
    /// Ends the stream: returns what is left to send.
    pub fn finish(&mut self) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        let text = self.tokenizer.decode(&self.ids, true)?;
        Ok(self.advance(&text))
    }
    /// Sends `upto` minus what was sent, when it extends what was sent.
    fn advance(&mut self, upto: &str) -> String {
        match upto.strip_prefix(self.sent.as_str()) {
            Some(rest) if !rest.is_empty() => {
                let rest = rest.to_string();
                self.sent.push_str(&rest);
                rest
            }
            _ => String::new(),
        }
    }
}
