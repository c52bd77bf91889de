//! Request bodies of the JSON endpoints. Every body rejects unknown fields, so a typo is a 400
//! naming the field instead of a silently ignored option.

use serde::Deserialize;

/// One prompt or several (OpenAI accepts both).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompts {
    /// A single prompt.
    One(String),
    /// Several prompts: `n` choices for each, in order.
    Many(Vec<String>),
}

impl Prompts {
    /// The prompts as a list.
    pub fn list(&self) -> Vec<String> {
        match self {
            Prompts::One(p) => vec![p.clone()],
            Prompts::Many(v) => v.clone(),
        }
    }
}

/// Stop strings: one or a list (OpenAI allows up to 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stops {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl Stops {
    /// The stop strings as a list.
    pub fn list(&self) -> Vec<String> {
        match self {
            Stops::One(s) => vec![s.clone()],
            Stops::Many(v) => v.clone(),
        }
    }
}

/// `POST /v1/completions`, OpenAI's completion request (the fields wenhui implements).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Model name; optional, echoed back (the server serves one model).
    #[serde(default)]
    pub model: Option<String>,
    /// The text to continue.
    pub prompt: Prompts,
    /// Most new tokens per choice (default 16, as OpenAI). A GLM prompt with several blanks
    /// (`[MASK]`…) fills them in order within this one budget; its `text` is the fills joined by `\n`.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 = greedy (default 1, as OpenAI).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1] (default 1).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// wenhui extension: sample among the k best tokens (default 0 = all, as OpenAI).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Choices per prompt (default 1); choice `k` samples with seed `seed + k`.
    #[serde(default)]
    pub n: Option<usize>,
    /// Stop strings: generation ends before the first one, which is not returned.
    #[serde(default)]
    pub stop: Option<Stops>,
    /// Send server-sent events token by token.
    #[serde(default)]
    pub stream: bool,
    /// Seed of the sampler (default 0): the same seed gives the same text.
    #[serde(default)]
    pub seed: Option<u64>,
    /// OpenAI's end-user id; accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
    /// OpenAI's token log-probabilities: only `null` (none) is accepted, so a client that sends
    /// the default works and one that needs them hears that they are not supported.
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    /// OpenAI's prompt echo: only `false` is accepted.
    #[serde(default)]
    pub echo: Option<bool>,
    /// OpenAI's frequency penalty in [-2, 2] (default 0): a token's score is lowered by this much
    /// for each time it occurs in the choice's generated text so far (not the prompt).
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// OpenAI's presence penalty in [-2, 2] (default 0): a token's score is lowered by this much
    /// once it occurs in the choice's generated text (not the prompt).
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// wenhui extension: CTRL repetition penalty, > 0 (default 1 = off) on tokens of the prompt
    /// and the generated text.
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// wenhui extension: no n-gram of this size occurs twice, prompt included (default 0 = off).
    #[serde(default)]
    pub no_repeat_ngram_size: Option<usize>,
    /// OpenAI's server-side best-of sampling: only 1 is accepted.
    #[serde(default)]
    pub best_of: Option<u64>,
    /// OpenAI's stream options (with `stream: true`): `include_usage` sends a last chunk with
    /// `usage` and no choices before `[DONE]`.
    #[serde(default, deserialize_with = "stream_options")]
    pub stream_options: Option<StreamOptions>,
}

/// Reads `stream_options` from a JSON object only: serde would read the struct from a JSON array
/// too (its fields in order), so `[true]` would silently mean `include_usage`.
fn stream_options<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<StreamOptions>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => StreamOptions::deserialize(v).map(Some).map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("`stream_options` must be a JSON object, e.g. {\"include_usage\": true}, or left out")),
    }
}

/// OpenAI's `stream_options` of a completion request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the whole request's `usage` (and `"usage": null` in the others).
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/fill`: GLM blank filling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillRequest {
    /// Text with `[MASK]`, `[sMASK]` or `[gMASK]` blanks (none: `[gMASK]` is appended).
    pub text: String,
    /// Most new tokens per blank (default 32).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 or absent = greedy.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1] (default 1).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Sample among the k best tokens (default 0 = all).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Beam search with this many beams (default 1; not with sampling).
    #[serde(default)]
    pub beams: Option<usize>,
    /// Seed of the sampler (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// OpenAI's frequency penalty in [-2, 2] (default 0), counted within each blank's fill.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// OpenAI's presence penalty in [-2, 2] (default 0), counted within each blank's fill.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// CTRL repetition penalty, > 0 (default 1 = off), on every token of the text and the fills.
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// No n-gram of this size occurs twice in the text and its fills (default 0 = off).
    #[serde(default)]
    pub no_repeat_ngram_size: Option<usize>,
}

/// `POST /v1/poem`: a classical poem with inverse prompting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoemRequest {
    /// The title, e.g. 虹桥机场.
    pub title: String,
    /// 五绝 (default), 七绝, 五律, 七律 (or wujue, qijue, wulv, qilv).
    #[serde(default)]
    pub form: Option<String>,
    /// Acrostic heads, one character per line.
    #[serde(default)]
    pub acrostic: Option<String>,
    /// Keywords the poem must contain, each within one line (1 to 4 Chinese characters each).
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Rhyme table: pingshui (default), cilin or xinyun.
    #[serde(default)]
    pub rhyme: Option<String>,
    /// The author named in the prompt (default 李白).
    #[serde(default)]
    pub author: Option<String>,
    /// Seed of the sampler (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Live beams (default: the task's).
    #[serde(default)]
    pub beams: Option<usize>,
    /// Include each step's top candidates with their scores.
    #[serde(default)]
    pub explain: bool,
    /// Rank candidates with inverse prompting (default true); false: the forward-only search baseline.
    #[serde(default)]
    pub inverse: Option<bool>,
    /// Send server-sent events: `{index, line}` per decided line, `{index, line, revised: true}`
    /// when refinement replaces a line already sent, then `{result}`.
    #[serde(default)]
    pub stream: bool,
}

/// `POST /v1/answer`: answer a question with inverse prompting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The question.
    pub question: String,
    /// A longer description of the question.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of the sampler (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Live beams (default: the task's).
    #[serde(default)]
    pub beams: Option<usize>,
}

/// `POST /v1/classify`: label probabilities of one example for a cloze task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// A built-in task (`rte`, `cb`, `boolq`, `copa`, `wic`, `wsc`, `multirc`).
    #[serde(default)]
    pub task: Option<String>,
    /// Or a whole task file as TOML text (fields, template, verbalizer).
    #[serde(default)]
    pub task_toml: Option<String>,
    /// The example, as `wenhui classify` takes a JSON object: a SuperGLUE line (read with the
    /// task's reader) or the task's field values; it must make one example. A field given twice
    /// is refused, as a repeated field of the body is.
    #[serde(deserialize_with = "unique_fields")]
    pub input: serde_json::Map<String, serde_json::Value>,
}

/// Reads a JSON object whose keys are all different (serde_json's map keeps the last of
/// repeated keys silently).
fn unique_fields<'de, D: serde::Deserializer<'de>>(d: D) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object with the example's fields")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut fields = serde_json::Map::new();
            while let Some(key) = a.next_key::<String>()? {
                if fields.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("duplicate field `{key}` in `input`: give each field once")));
                }
                let value = a.next_value()?;
                fields.insert(key, value);
            }
            Ok(fields)
        }
    }
    d.deserialize_map(Fields)
}
