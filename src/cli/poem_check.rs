//! `wenhui poem --check TEXT`: a poem the user wrote, checked against the poetry rules with no
//! model: each line's 平仄 as the checker reads it, the rhyme group of each rhyme character, every
//! violation, a summary, and the exit status 0 (passes), 1 (violations) or 2 (unusable input).

use std::io::{Read, Write};

use wenhui::generate::poetry::{
    check_poem, in_tone_table, placements, rhyme_index, split_lines, to_simplified, tone_of, toned_pinyin, Constraints, Form, Placement,
    RhymeTable, Tone, Verdict, Violation,
};

/// The exit statuses of `poem --check`, shown after `wenhui poem --help`.
pub const EXIT_HELP: &str = "Exit status with --check: 0 the poem passes every rule, 1 it breaks at least one (each violation is \
listed), 2 unusable input: a usage error, or text that cannot be read as a poem (empty, a non-Chinese character, a shape that \
is no 五绝/七绝/五律/七律 when --form is not given, a bad --form/--rhyme/--acrostic/--include, unreadable stdin), reported as `error: …` \
on stderr. Without --check, any error exits 1.";

/// Exit status of a poem that breaks a rule.
const EXIT_VIOLATIONS: i32 = 1;
/// Exit status of input that cannot be checked (as clap's usage errors).
const EXIT_UNUSABLE: i32 = 2;

/// How one character is read.
struct Reading {
    /// The character as written.
    written: char,
    /// The character looked up (simplified).
    read_as: char,
    /// 平仄 as the checker reads it (`None`: unknown).
    tone: Option<Tone>,
    /// `table` (Word_Tune.json), `pinyin` (the modern reading's fallback) or `None` when unknown.
    source: Option<&'static str>,
}

impl Reading {
    fn of(written: char) -> Reading {
        let read_as = to_simplified(written);
        let tone = tone_of(read_as);
        let source = match tone {
            Some(_) if in_tone_table(read_as) => Some("table"),
            Some(_) => Some("pinyin"),
            None => None,
        };
        Reading { written, read_as, tone, source }
    }

    /// `平`, `仄`, `*` (either) or `?` (unknown).
    fn mark(&self) -> char {
        match self.tone {
            Some(Tone::Either) => '*',
            Some(t) => t.label(),
            None => '?',
        }
    }

    fn json_tone(&self) -> &'static str {
        match self.tone {
            Some(Tone::Ping) => "平",
            Some(Tone::Ze) => "仄",
            Some(Tone::Either) => "either",
            None => "unknown",
        }
    }
}

/// One line as written, its readings and, at a rhyme position, the rhyme groups of its last
/// character.
struct Line {
    text: String,
    chars: Vec<Reading>,
    rhyme: Option<Rhyme>,
}

/// The rhyme character of a line and the group names it is read in (empty: not in the table).
struct Rhyme {
    written: char,
    groups: Vec<String>,
}

impl Line {
    fn tones(&self) -> String {
        self.chars.iter().map(Reading::mark).collect()
    }
}

/// `poem --check`: prints the report and exits 1 on violations, 2 on unusable input.
pub fn run(text: &str, form: &str, rhyme: &str, acrostic: &str, keywords: &[String], json: bool) -> anyhow::Result<()> {
    match check(text, form, rhyme, acrostic, keywords, json) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let _ = std::io::stdout().flush();
            std::process::exit(EXIT_VIOLATIONS);
        }
        Err(msg) => {
            // main's format for errors, with the status of a usage error.
            let _ = std::io::stdout().flush();
            eprintln!("error: {msg}");
            std::process::exit(EXIT_UNUSABLE);
        }
    }
}

/// The library's message of an input error, without the `invalid input:` prefix.
fn message(e: wenhui::Error) -> String {
    match e {
        wenhui::Error::Input(m) => m,
        other => other.to_string(),
    }
}

/// Checks and prints; `Ok(passes)`, or `Err(why the input cannot be checked)`.
fn check(arg: &str, form: &str, rhyme: &str, acrostic: &str, keywords: &[String], json: bool) -> Result<bool, String> {
    let stdin;
    let (text, flag) = if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("--check -: cannot read the poem from stdin ({e})"))?;
        stdin = s;
        (stdin.as_str(), "--check - (stdin)")
    } else {
        (arg, "--check")
    };
    let parsed = split_lines(text).map_err(|e| format!("{flag}: {}", message(e)))?;
    let table: RhymeTable = rhyme.parse().map_err(|e| format!("--rhyme: {}", message(e)))?;
    let (form, inferred) = if form.trim().eq_ignore_ascii_case("auto") {
        let lens: Vec<usize> = parsed.iter().map(|l| l.body.len()).collect();
        (infer_form(&lens).map_err(|shape| not_a_form(flag, &shape, text))?, true)
    } else {
        (form.parse::<Form>().map_err(|e| format!("--form: {}", message(e)))?, false)
    };
    let c = Constraints::parse(form.name(), table.name(), acrostic).map_err(|e| format!("--acrostic: {}", message(e)))?;
    let c = c.with_keywords(keywords).map_err(|e| format!("--include: {}", message(e)))?;
    let verdict = check_poem(text, &c).map_err(|e| format!("{flag}: {}", message(e)))?;
    let lines = read_lines(text, &parsed, table);
    if json {
        println!("{}", to_json(text, &c, inferred, acrostic, &lines, &verdict));
    } else {
        print_text(&c, inferred, &lines, &verdict);
    }
    Ok(verdict.is_ok())
}

/// The form of a poem with lines of `lens` characters, or a description of the shape found.
fn infer_form(lens: &[usize]) -> Result<Form, String> {
    let n = lens.len();
    let first = lens.first().copied().unwrap_or(0);
    if lens.iter().all(|&l| l == first) {
        return Form::of_shape(n, first).ok_or_else(|| format!("{n} line{} of {first} character{}", plural(n), plural(first)));
    }
    let each: Vec<String> = lens.iter().map(usize::to_string).collect();
    Err(format!("{n} lines of {} characters", each.join(", ")))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The error for a text whose shape fits no form.
fn not_a_form(flag: &str, shape: &str, text: &str) -> String {
    let mut msg = format!(
        "{flag}: {shape}: not a 五绝/七绝/五律/七律 (4 or 8 lines of 5 or 7 characters); give --form to check it against one anyway"
    );
    if !text.chars().any(|c| "，,。？?！!；;".contains(c)) {
        msg.push_str(" (lines are split at their end punctuation ，。？！；: end each line with it)");
    }
    msg
}

/// Each line as written (the parsed lines are simplified) with its readings, and the rhyme
/// groups at the rhyme positions: every even line, and line 1 when it ends on 平 (首句入韵).
fn read_lines(text: &str, parsed: &[wenhui::generate::poetry::PoemLine], table: RhymeTable) -> Vec<Line> {
    let idx = rhyme_index(table);
    // The groups every known even-line final shares (level groups first, as the rhyme rule
    // reads them): the group the poem rhymes in, when there is one.
    let finals: Vec<char> = parsed.iter().skip(1).step_by(2).filter_map(|l| l.body.last().copied()).collect();
    let mut common: Option<Vec<usize>> = None;
    for &f in finals.iter().filter(|f| idx.knows(**f)) {
        let g = idx.groups_of(f);
        common = Some(match common {
            None => g.to_vec(),
            Some(c) => c.into_iter().filter(|x| g.contains(x)).collect(),
        });
    }
    let mut common = common.unwrap_or_default();
    if common.iter().any(|&g| idx.groups[g].level) {
        common.retain(|&g| idx.groups[g].level);
    }
    // split_lines maps one character to one character and skips only whitespace: the written
    // characters, whitespace skipped, follow the parsed lines one for one.
    let mut written = text.chars().filter(|c| !c.is_whitespace());
    let mut out = Vec::with_capacity(parsed.len());
    for (k, l) in parsed.iter().enumerate() {
        let body: Vec<char> = written.by_ref().take(l.body.len()).collect();
        let mut line_text: String = body.iter().collect();
        if l.punct.is_some() {
            line_text.extend(written.next());
        }
        let chars: Vec<Reading> = body.iter().map(|&c| Reading::of(c)).collect();
        let rhyme = chars.last().filter(|r| k % 2 == 1 || (k == 0 && r.tone == Some(Tone::Ping))).map(|r| {
            let own = idx.groups_of(r.read_as);
            let used: Vec<usize> = own.iter().copied().filter(|g| common.contains(g)).collect();
            let shown = if used.is_empty() { own.to_vec() } else { used };
            Rhyme { written: r.written, groups: shown.iter().map(|&g| idx.groups[g].name.clone()).collect() }
        });
        out.push(Line { text: line_text, chars, rhyme });
    }
    out
}

fn print_text(c: &Constraints, inferred: bool, lines: &[Line], v: &Verdict) {
    let form = c.form.name();
    let table = c.rhyme.chinese_name();
    let how = if inferred { " (form inferred from the text)" } else { "" };
    println!("{form} · {table}{how}");
    for (k, l) in lines.iter().enumerate() {
        let mut row = format!("{:>2}  {}  {}", k + 1, l.text, l.tones());
        if let Some(r) = &l.rhyme {
            let groups = if r.groups.is_empty() { format!("not in the {table} table") } else { r.groups.join(" or ") };
            row.push_str(&format!("  rhyme {}: {groups}", r.written));
        }
        let pinyin: Vec<String> = l
            .chars
            .iter()
            .filter(|r| r.source == Some("pinyin"))
            .map(|r| format!("{}={}", r.written, toned_pinyin(r.read_as).unwrap_or_default()))
            .collect();
        if !pinyin.is_empty() {
            row.push_str(&format!("  (not in the tone table, read from pinyin: {})", pinyin.join(" ")));
        }
        println!("{row}");
    }
    if lines.iter().flat_map(|l| &l.chars).any(|r| matches!(r.tone, Some(Tone::Either) | None)) {
        println!("(* = either 平 or 仄: a character with both readings or a neutral tone; ? = 平仄 unknown)");
    }
    if !c.keywords.is_empty() {
        println!("include: {}", placed(c, lines).iter().map(Placement::to_string).collect::<Vec<_>>().join(", "));
    }
    for x in &v.violations {
        println!("violation: {x}");
    }
    for x in &v.warnings {
        println!("warning: {x}");
    }
    let warned = match v.warnings.len() {
        0 => String::new(),
        n => format!(", {n} warning{}", plural(n)),
    };
    match v.violations.len() {
        0 => println!("ok: {form}, {table}, no violations{warned}"),
        n => println!("{n} violation{} ({form}, {table}){warned}", plural(n)),
    }
}

/// Each keyword and the line that holds it.
fn placed(c: &Constraints, lines: &[Line]) -> Vec<Placement> {
    placements(c, &lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>())
}

/// A violation with 1-based line and position, as the text output counts them.
fn violation_json(x: &Violation) -> serde_json::Value {
    serde_json::json!({
        "rule": format!("{:?}", x.rule), "line": x.line + 1, "position": x.pos.map(|p| p + 1), "message": x.message,
    })
}

fn to_json(text: &str, c: &Constraints, inferred: bool, acrostic: &str, lines: &[Line], v: &Verdict) -> serde_json::Value {
    let include = placed(c, lines);
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            let chars: Vec<serde_json::Value> = l
                .chars
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "char": r.written.to_string(), "read_as": r.read_as.to_string(), "tone": r.json_tone(), "source": r.source,
                    })
                })
                .collect();
            let rhyme = l.rhyme.as_ref().map(|r| serde_json::json!({"char": r.written.to_string(), "groups": r.groups}));
            serde_json::json!({"text": l.text, "tones": l.tones(), "chars": chars, "rhyme": rhyme})
        })
        .collect();
    serde_json::json!({
        "text": text,
        "form": c.form.name(),
        "form_inferred": inferred,
        "rhyme_table": c.rhyme.name(),
        "rhyme_table_name": c.rhyme.chinese_name(),
        "acrostic": acrostic.trim(),
        "include": include,
        "lines": lines,
        "violations": v.violations.iter().map(violation_json).collect::<Vec<_>>(),
        "warnings": v.warnings.iter().map(violation_json).collect::<Vec<_>>(),
        "ok": v.is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_inferred_from_the_shape() {
        assert_eq!(infer_form(&[5; 4]), Ok(Form::WuJue));
        assert_eq!(infer_form(&[7; 4]), Ok(Form::QiJue));
        assert_eq!(infer_form(&[5; 8]), Ok(Form::WuLv));
        assert_eq!(infer_form(&[7; 8]), Ok(Form::QiLv));
        assert_eq!(infer_form(&[5; 3]), Err("3 lines of 5 characters".to_string()));
        assert_eq!(infer_form(&[5, 5, 6, 5]), Err("4 lines of 5, 5, 6, 5 characters".to_string()));
        assert_eq!(infer_form(&[20]), Err("1 line of 20 characters".to_string()));
    }

    #[test]
    fn lines_keep_the_text_as_written() {
        let text = "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。";
        let parsed = split_lines(text).unwrap_or_default();
        let lines = read_lines(text, &parsed, RhymeTable::Pingshui);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["白日依山盡，", "黃河入海流。", "欲窮千里目，", "更上一層樓。"]);
        assert_eq!(lines[3].chars[4].read_as, '楼');
        let r = lines[3].rhyme.as_ref().map(|r| (r.written, r.groups.clone()));
        assert_eq!(r, Some(('樓', vec!["下平声部/十一尤".to_string()])));
        assert!(lines[2].rhyme.is_none() && lines[0].rhyme.is_none(), "尽 and 目 end on 仄: no rhyme position");
    }
}
