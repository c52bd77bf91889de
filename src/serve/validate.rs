//! Request checks that need no model, only its tokenizer and a few facts about it. The HTTP handlers
//! run them before a request queues, so a wrong request gets its 4xx at once — not behind queued
//! work, not as a 429, and never as an event of a stream that already answered 200. Each check
//! returns a plan (token ids, parsed task, constraints) that travels through the queue with the
//! request, so the worker neither tokenizes nor parses anything a second time.

use super::api::{AnswerRequest, ClassifyRequest, CompletionRequest, FillRequest, PoemRequest};
use super::fit::{answer_search_fit, glm_search_fit, longest_poem, AnswerTooLong, SearchTooLong};
use super::limits::{ApiError, Limits};
use super::worker::ServedModel;
use crate::generate::inverse::{keyword_tokens, InverseMode, Task};
use crate::generate::poetry::{to_simplified, Constraints};
use crate::generate::{glm_context, GenerationConfig};
use crate::model::ModelKind;
use crate::tokenizer::Tokenizer;
use std::collections::BTreeMap;

/// What the HTTP side knows about the served model (a copy of the tokenizer: the model itself
/// stays on the worker).
pub(crate) struct Front {
    /// The model's tokenizer.
    pub(crate) tokenizer: Tokenizer,
    /// The architecture.
    pub(crate) kind: ModelKind,
    /// The model's positions.
    pub(crate) max_positions: usize,
    /// Tasks of the served P-tuned prompts (`--prompt DIR`), in their order.
    pub(crate) prompt_tasks: Vec<crate::cloze::ClozeTask>,
    /// A seq2seq model's layout: completion prompts are its sources.
    pub(crate) seq2seq: Option<crate::data::seq2seq::Seq2seqLayout>,
}

impl Front {
    /// The facts of `model`.
    pub(crate) fn of(model: &ServedModel) -> Self {
        Self {
            tokenizer: model.tokenizer.clone(),
            kind: model.kind(),
            max_positions: model.backbone.info().max_positions,
            prompt_tasks: model.prompts.iter().map(|p| p.task.clone()).collect(),
            seq2seq: model.seq2seq.as_ref().map(|s| s.layout.clone()),
        }
    }
}

/// 400 unless `text` has something besides whitespace (a model would generate from nothing).
fn not_blank(text: &str, what: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{what} is empty or only whitespace: give some text")));
    }
    Ok(())
}

/// 400 when the model's vocabulary knows nothing of `text` (every token `[UNK]`: the model would
/// answer from nothing), as `/v1/fill` and the commands refuse it; `what` names the field. Text
/// the model reads in part is allowed.
pub(crate) fn readable(tok: &crate::tokenizer::Tokenizer, text: &str, what: &str) -> Result<(), ApiError> {
    match crate::generate::unknown_text(tok, text)?.refusal(what) {
        Some(refusal) => Err(ApiError::bad_request(refusal)),
        None => Ok(()),
    }
}

/// Checks a prompt's token count against the limit and the model.
pub(crate) fn check_prompt(front: &Front, n: usize, limits: &Limits) -> Result<(), ApiError> {
    check_named_prompt(front, "the prompt", n, limits)
}

/// [`check_prompt`] for the prompt called `name` (`prompt 2` of a list).
fn check_named_prompt(front: &Front, name: &str, n: usize, limits: &Limits) -> Result<(), ApiError> {
    let max_pos = front.max_positions;
    if n > limits.max_prompt_tokens {
        return Err(ApiError::bad_request(format!(
            "{name} is {n} tokens, over the limit of {} prompt tokens (--max-prompt-tokens); shorten it",
            limits.max_prompt_tokens
        )));
    }
    if n > max_pos {
        return Err(ApiError::bad_request(format!("{name} is {n} tokens but the model has only {max_pos} positions; shorten it")));
    }
    Ok(())
}

/// Checks a requested `max_tokens` against the limit.
fn check_max_tokens(n: usize, limits: &Limits) -> Result<(), ApiError> {
    if n == 0 || n > limits.max_tokens {
        return Err(ApiError::bad_request(format!(
            "max_tokens must be between 1 and {} (the --max-tokens limit), got {n}",
            limits.max_tokens
        )));
    }
    Ok(())
}

fn check_temperature(t: f32) -> Result<(), ApiError> {
    if !(t >= 0.0 && t.is_finite()) {
        return Err(ApiError::bad_request(format!("temperature must be ≥ 0, got {t}")));
    }
    Ok(())
}

fn check_top_p(p: Option<f32>) -> Result<(), ApiError> {
    match p {
        Some(p) if !(p > 0.0 && p <= 1.0) => Err(ApiError::bad_request(format!("top_p must be in (0, 1], got {p}"))),
        _ => Ok(()),
    }
}

fn check_beams(b: usize, limits: &Limits) -> Result<(), ApiError> {
    if b == 0 || b > limits.max_beams {
        return Err(ApiError::bad_request(format!("beams must be between 1 and {} (--max-beams), got {b}", limits.max_beams)));
    }
    Ok(())
}

/// The repetition controls of a `/v1/completions` or `/v1/fill` request, checked: OpenAI's
/// frequency and presence penalties and wenhui's repetition penalty and no-repeat n-gram size.
/// Every choice of the request (every row of the batch it joins) decodes with them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Penalties {
    frequency: f32,
    presence: f32,
    repetition: f32,
    no_repeat_ngram_size: usize,
}

impl Penalties {
    /// Checks the fields (absent: their no-op default) as every decoding checks them
    /// ([`GenerationConfig::validate`], in the decoder's 32-bit floats: 1e-50 becomes 0 and 1e300
    /// infinity); a value out of range is a 400 naming it.
    pub(crate) fn check(
        frequency: Option<f64>,
        presence: Option<f64>,
        repetition: Option<f64>,
        no_repeat_ngram_size: Option<usize>,
    ) -> Result<Self, ApiError> {
        let p = Self {
            frequency: frequency.unwrap_or(0.0) as f32,
            presence: presence.unwrap_or(0.0) as f32,
            repetition: repetition.unwrap_or(1.0) as f32,
            no_repeat_ngram_size: no_repeat_ngram_size.unwrap_or(0),
        };
        let mut cfg = GenerationConfig::default();
        p.apply(&mut cfg);
        cfg.validate()?;
        Ok(p)
    }

    /// Sets `cfg`'s processor fields.
    pub(crate) fn apply(&self, cfg: &mut GenerationConfig) {
        cfg.frequency_penalty = self.frequency;
        cfg.presence_penalty = self.presence;
        cfg.repetition_penalty = self.repetition;
        cfg.no_repeat_ngram_size = self.no_repeat_ngram_size;
    }
}

/// The sampling settings of a request (`temperature` 0 = greedy).
pub(crate) fn sampling(
    model: &ServedModel,
    max_new: usize,
    temperature: f32,
    top_p: Option<f32>,
    top_k: Option<usize>,
    seed: u64,
) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: max_new,
        do_sample: temperature > 0.0,
        temperature: if temperature > 0.0 { temperature } else { 1.0 },
        top_p: top_p.unwrap_or(1.0),
        top_k: top_k.unwrap_or(0),
        seed,
        bad_words_ids: model.padding_ids.clone(),
        ..Default::default()
    }
}

/// A checked completion request: its contexts (token ids) and settings.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Each prompt's context (GLM: `[CLS] prompt [gMASK]`), checked against the limits.
    pub(crate) contexts: Vec<Vec<u32>>,
    /// Choices per prompt.
    pub(crate) n: usize,
    /// Stop strings.
    pub(crate) stops: Vec<String>,
    /// Most new tokens per choice (all blanks of a GLM prompt together).
    pub(crate) max_new: usize,
    temperature: f32,
    seed: u64,
    penalties: Penalties,
}

impl Prepared {
    /// The generation config of choice `k` of a prompt (seed + k).
    pub(crate) fn config(&self, model: &ServedModel, r: &CompletionRequest, k: usize) -> GenerationConfig {
        let mut cfg = sampling(model, self.max_new, self.temperature, r.top_p, r.top_k, self.seed.wrapping_add(k as u64));
        self.penalties.apply(&mut cfg);
        cfg
    }
}

/// Checks a completion request and tokenizes its prompts.
pub(crate) fn completion(front: &Front, r: &CompletionRequest, limits: &Limits) -> Result<Prepared, ApiError> {
    let prompts = r.prompt.list();
    let n = r.n.unwrap_or(1);
    if prompts.is_empty() {
        return Err(ApiError::bad_request("prompt is an empty list: give at least one prompt"));
    }
    // `n` alone first: a huge `n` must not wrap the product below the limit.
    let choices = prompts.len().checked_mul(n).filter(|&c| n > 0 && c <= limits.max_choices);
    if choices.is_none() {
        return Err(ApiError::bad_request(format!(
            "n × prompts must be between 1 and {} (--max-choices), got {} × {}",
            limits.max_choices,
            n,
            prompts.len()
        )));
    }
    // Every choice is a row of the decode batch, and one request's rows join it together.
    let rows = prompts.len() * n;
    if rows > limits.max_batch {
        return Err(ApiError::bad_request(format!(
            "n × prompts is {rows} ({n} × {}), but this server decodes at most {} rows together (--max-batch); lower `n` or send \
             the prompts in separate requests",
            prompts.len(),
            limits.max_batch
        )));
    }
    super::checks::openai_defaults(r)?;
    let max_new = r.max_tokens.unwrap_or(16);
    check_max_tokens(max_new, limits)?;
    let stops = r.stop.as_ref().map(|s| s.list()).unwrap_or_default();
    if stops.len() > 4 || stops.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad_request("stop takes at most 4 non-empty strings"));
    }
    let temperature = r.temperature.unwrap_or(1.0);
    check_temperature(temperature)?;
    check_top_p(r.top_p)?;
    let penalties = Penalties::check(r.frequency_penalty, r.presence_penalty, r.repetition_penalty, r.no_repeat_ngram_size)?;
    let tok = &front.tokenizer;
    // Numbered from 1, in every message about one prompt of a list.
    let name = |i: usize| if prompts.len() == 1 { "prompt".to_string() } else { format!("prompt {}", i + 1) };
    // An empty prompt is said first, before what the model cannot read of another.
    for (i, p) in prompts.iter().enumerate() {
        not_blank(p, &name(i))?;
    }
    let mut contexts = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let name = name(i);
        readable(&front.tokenizer, p, &format!("`{name}`"))?;
        let ids = match (front.kind, &front.seq2seq) {
            (ModelKind::Glm, Some(layout)) => {
                layout.encode_source(tok, p).map_err(|e| ApiError::bad_request(format!("`{name}` as the model's seq2seq source: {e}")))?
            }
            (ModelKind::Glm, None) => glm_context(tok, p)?,
            (ModelKind::Gpt2, _) => tok.encode(p, false)?,
            (ModelKind::Bert, _) => {
                return Err(ApiError::bad_request("this model is a BERT masked LM: it cannot generate (serve a GLM or a GPT-2)"))
            }
        };
        if ids.is_empty() {
            return Err(ApiError::bad_request("the prompt encodes to no tokens; give visible text"));
        }
        check_named_prompt(front, if prompts.len() == 1 { "the prompt" } else { &name }, ids.len(), limits)?;
        contexts.push(ids);
    }
    Ok(Prepared { contexts, n, stops, max_new, temperature, seed: r.seed.unwrap_or(0), penalties })
}

/// A checked `/v1/fill` request.
#[derive(Debug)]
pub(crate) struct FillPlan {
    /// `[CLS] text …` with its blanks.
    pub(crate) context: Vec<u32>,
    /// Most new tokens per blank.
    pub(crate) max_new: usize,
    /// Beams.
    pub(crate) beams: usize,
    /// Temperature (0 = greedy).
    pub(crate) temperature: f32,
    /// The repetition controls.
    pub(crate) penalties: Penalties,
}

/// Checks a `/v1/fill` request and tokenizes its text.
pub(crate) fn fill(front: &Front, r: &FillRequest, limits: &Limits) -> Result<FillPlan, ApiError> {
    if front.kind != ModelKind::Glm {
        return Err(ApiError::bad_request(format!("/v1/fill needs a GLM; the served model is a {}", front.kind)));
    }
    not_blank(&r.text, "text")?;
    let max_new = r.max_tokens.unwrap_or(32);
    check_max_tokens(max_new, limits)?;
    let beams = r.beams.unwrap_or(1);
    check_beams(beams, limits)?;
    let temperature = r.temperature.unwrap_or(0.0);
    check_temperature(temperature)?;
    check_top_p(r.top_p)?;
    let penalties = Penalties::check(r.frequency_penalty, r.presence_penalty, r.repetition_penalty, r.no_repeat_ngram_size)?;
    if beams > 1 && temperature > 0.0 {
        return Err(ApiError::bad_request(format!(
            "`beams` > 1 needs `temperature` 0 (beam search is deterministic); or use beams 1 to sample (got beams {beams}, \
             temperature {temperature})"
        )));
    }
    // As `wenhui fill`: a text the model can read nothing of is refused (every character [UNK]).
    readable(&front.tokenizer, &r.text, "`text`")?;
    let context = glm_context(&front.tokenizer, &r.text)?;
    check_prompt(front, context.len(), limits)?;
    Ok(FillPlan { context, max_new, beams, temperature, penalties })
}

/// The built-in task `name` with `beams` (checked against the limit), if the model can run it.
fn task(front: &Front, name: &str, beams: Option<usize>, limits: &Limits) -> Result<Task, ApiError> {
    let mut task = Task::builtin(name)?;
    if let Some(b) = beams {
        check_beams(b, limits)?;
        task.search.set_beams(b);
    }
    task.validate()?;
    if front.kind != ModelKind::Glm && task.inverse.mode == InverseMode::Glm {
        return Err(ApiError::bad_request(format!(
            "/v1/{name} needs a GLM (its inverse prompt is GLM blank filling); the served model is a {}",
            front.kind
        )));
    }
    Ok(task)
}

/// A checked `/v1/poem` request.
#[derive(Debug)]
pub(crate) struct PoemPlan {
    /// Form, rhyme table and acrostic heads.
    pub(crate) constraints: Constraints,
    /// The title, in simplified characters.
    pub(crate) title: String,
    /// The task with the request's beams.
    pub(crate) task: Task,
    /// Its field values.
    pub(crate) fields: BTreeMap<String, String>,
}

/// Checks a `/v1/poem` request, including that its prompt and the form's longest poem fit the
/// model's positions (a search would otherwise fail only when it gets there).
pub(crate) fn poem(front: &Front, r: &PoemRequest, limits: &Limits) -> Result<PoemPlan, ApiError> {
    let form = r.form.as_deref().unwrap_or("五绝");
    let rhyme = r.rhyme.as_deref().unwrap_or("pingshui");
    let constraints = Constraints::parse(form, rhyme, r.acrostic.as_deref().unwrap_or(""))?;
    let constraints = poem_keywords(constraints, r.include.as_deref().unwrap_or_default(), &front.tokenizer)?;
    let title: String = r.title.trim().chars().map(to_simplified).collect();
    if title.is_empty() {
        return Err(ApiError::bad_request("title is empty: give the poem a title, e.g. 虹桥机场"));
    }
    if title.chars().count() > 64 {
        return Err(ApiError::bad_request("title is longer than 64 characters"));
    }
    let author = r.author.clone().unwrap_or_else(|| "李白".into());
    let task = task(front, "poem", r.beams, limits)?;
    readable(&front.tokenizer, &title, "`title`")?;
    // Each acrostic head must be one token the sampler can force (as the search checks).
    for c in (0..constraints.heads.len()).filter_map(|k| constraints.head(k)) {
        let ids = front.tokenizer.encode(&c.to_string(), false)?;
        if ids.len() != 1 || front.tokenizer.decode(&ids, true)?.trim() != c.to_string() {
            return Err(ApiError::bad_request(format!(
                "the acrostic head `{c}` is not one token of this model's vocabulary; choose another character"
            )));
        }
    }
    let given = BTreeMap::from([
        ("title".to_string(), title.clone()),
        ("author".to_string(), author),
        ("form".to_string(), constraints.form.name().to_string()),
    ]);
    let fields = task.fields(&given)?;
    if front.kind == ModelKind::Glm {
        let units = longest_poem(constraints.form);
        if let Some(t) = glm_search_fit(&front.tokenizer, &task, &fields, &units, "title", front.max_positions)? {
            let form = constraints.form.name();
            let (what, advice) = if t.fits > 0 {
                let or = if r.author.is_some() { " (or shorten `author`)" } else { "" };
                ("the title is", format!("shorten `title` to at most {} characters{or}", t.fits))
            } else if r.author.is_some() {
                ("the author is", "shorten `author`".to_string())
            } else {
                ("this form is", "choose a shorter form".to_string())
            };
            return Err(ApiError::bad_request(format!(
                "{what} too long for a {form} on this model: the prompt with the longest {form} takes {} positions but the model \
                 has {}; {advice}",
                t.need, t.max_positions
            )));
        }
    }
    Ok(PoemPlan { constraints, title, task, fields })
}

/// `constraints` with the request's `include` keywords, each checked (as `wenhui poem --include`
/// checks them, and that every character is one token the search can force): a 400 naming the
/// field and the keyword otherwise.
fn poem_keywords(constraints: Constraints, include: &[String], tok: &Tokenizer) -> Result<Constraints, ApiError> {
    let named = |e: crate::Error| match e {
        crate::Error::Input(m) => ApiError::bad_request(format!("`include`: {m}")),
        other => other.into(),
    };
    let constraints = constraints.with_keywords(include).map_err(named)?;
    for k in constraints.simplified_keywords() {
        keyword_tokens(tok, &k.iter().collect::<String>()).map_err(named)?;
    }
    Ok(constraints)
}

/// A checked `/v1/answer` request.
#[derive(Debug)]
pub(crate) struct AnswerPlan {
    /// The task with the request's beams.
    pub(crate) task: Task,
    /// Its field values.
    pub(crate) fields: BTreeMap<String, String>,
}

/// Checks a `/v1/answer` request, including (for a GLM) that its prompts and an answer fit the
/// model's positions, as `wenhui answer` checks them (a search would otherwise fail only when it
/// gets there).
pub(crate) fn answer(front: &Front, r: &AnswerRequest, limits: &Limits) -> Result<AnswerPlan, ApiError> {
    not_blank(&r.question, "question")?;
    let description = r.description.clone().unwrap_or_default();
    let description_given = !description.trim().is_empty();
    let task = task(front, "answer", r.beams, limits)?;
    readable(&front.tokenizer, &r.question, "`question`")?;
    if description_given {
        readable(&front.tokenizer, &description, "`description`")?;
    }
    let given = BTreeMap::from([("question".to_string(), r.question.clone()), ("description".to_string(), description)]);
    let fields = task.fields(&given)?;
    // --max-prompt-tokens counts the tokens of the prompt the search builds, as on every endpoint.
    super::checks::search_prompt(front, &task, &fields, limits, "`question` and `description`", "`question` or `description`")?;
    if front.kind == ModelKind::Glm {
        if let Some(too_long) = answer_search_fit(&front.tokenizer, &task, &fields, description_given, front.max_positions)? {
            let need = |t: SearchTooLong| format!("the prompts would take {} positions but the model has {}", t.need, t.max_positions);
            return Err(ApiError::bad_request(match too_long {
                AnswerTooLong::Question(t) => format!(
                    "`question` is {} characters, too long for this model with room for an answer ({}); shorten `question` to at \
                     most {} characters",
                    t.chars,
                    need(t),
                    t.fits
                ),
                AnswerTooLong::Description(t) => format!(
                    "`description` is {} characters, too long for this model with this question ({}); shorten `description` to at \
                     most {} characters",
                    t.chars,
                    need(t),
                    t.fits
                ),
                AnswerTooLong::Both(t) => {
                    format!("`question` and `description` are too long for this model together ({}); shorten them", need(t))
                }
                AnswerTooLong::NoRoom(t) => {
                    format!("this model has too few positions for an answer to any `question` ({})", need(t))
                }
            }));
        }
    }
    Ok(AnswerPlan { task, fields })
}

/// Where a `/v1/classify` request's task comes from.
#[derive(Debug)]
pub(crate) enum TaskSource {
    /// The served P-tuned prompt at this index of `--prompt` (its task and vectors).
    Served(usize),
    /// A built-in task or the request's TOML, without a trained prompt.
    Given(Box<crate::cloze::ClozeTask>),
}

/// A checked `/v1/classify` request: its task and its one example's fields.
#[derive(Debug)]
pub(crate) struct ClassifyPlan {
    /// The task.
    pub(crate) source: TaskSource,
    /// The example's field values, read as `wenhui classify` reads its JSON input.
    pub(crate) example: BTreeMap<String, String>,
    /// Field tokens cut to fit the model's positions (the response reports them).
    pub(crate) truncated: usize,
}

/// Checks a `/v1/classify` request: its task (a served prompt's task, a built-in name or TOML
/// text) and its input, read as `wenhui classify` reads a JSON object (a SuperGLUE line through
/// the task's reader, so RTE's hypothesis loses its final punctuation alike; else the task's
/// fields), which must make exactly one example.
pub(crate) fn classify(front: &Front, r: &ClassifyRequest, limits: &Limits) -> Result<ClassifyPlan, ApiError> {
    let (source, task) = match (&r.task, &r.task_toml) {
        (Some(name), None) => match front.prompt_tasks.iter().position(|t| t.spec.name == *name) {
            Some(i) => (TaskSource::Served(i), front.prompt_tasks[i].clone()),
            None => {
                if !crate::cloze::task::BUILTIN.contains(&name.as_str()) {
                    let served = front.prompt_tasks.iter().map(|t| format!("`{}`", t.spec.name)).collect::<Vec<_>>();
                    let served =
                        if served.is_empty() { String::new() } else { format!(" nor a served prompt's task ({})", served.join(", ")) };
                    return Err(ApiError::bad_request(format!(
                        "unknown `task` `{name}`: not a built-in cloze task ({}){served}; or send a task file's text as `task_toml`",
                        crate::cloze::task::BUILTIN.join(", ")
                    )));
                }
                let task = crate::cloze::ClozeTask::builtin(name)?;
                super::checks::builtin_vocabulary(front, &task)?;
                (TaskSource::Given(Box::new(task.clone())), task)
            }
        },
        (None, Some(text)) => {
            let task = crate::cloze::ClozeTask::from_toml(text, "task_toml")?;
            (TaskSource::Given(Box::new(task.clone())), task)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `task` (a served prompt's task or a built-in name such as rte) and `task_toml`",
            ))
        }
    };
    let input = serde_json::Value::Object(r.input.clone());
    let mut examples = task.examples_from_json(&input).map_err(|e| super::checks::about_input(e.into()))?;
    if examples.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "input makes {} examples for task `{}` (a SuperGLUE MultiRC line holds one per answer option); send one example's fields: {}",
            examples.len(),
            task.spec.name,
            task.used_fields().join(", ")
        )));
    }
    let example = examples.swap_remove(0).fields;
    // The fields the request gave and the template reads (not those a reader derives, such as
    // COPA's connective): each must hold text the model can read, as every endpoint's text.
    for field in task.used_fields() {
        if let (Some(value), true) = (example.get(&field), r.input.contains_key(&field)) {
            not_blank(value, &format!("input field `{field}`"))?;
            readable(&front.tokenizer, value, &format!("input field `{field}`"))?;
        }
    }
    let truncated = super::checks::classify_input(front, &task, matches!(source, TaskSource::Served(_)), &example, limits)?;
    Ok(ClassifyPlan { source, example, truncated })
}
