//! Syntax errors in a user's words: what was expected, named as tokens (`)`, `;`) and kinds of
//! thing ("an expression"), never as grammar rules; a missing `;` shown where it is missing (the
//! end of the previous line, not the start of the next); "did you mean `let`" for a mistyped
//! keyword; the unclosed bracket a missing `)` belongs to.

use pest::error::{Error, ErrorVariant, InputLocation};

use super::ast::Span;
use super::parser::Rule;
use crate::diag::{closest, Diagnostic};

/// Words the grammar reserves, for "did you mean".
const KEYWORDS: [&str; 11] = [
    "kernel", "let", "var", "for", "in", "if", "else", "step", "requires", "grid", "tensor",
];

/// What a grammar rule is, in words; None for rules that are parts of an expression (their
/// alternatives are summed up as "an expression") or that a user never types as such.
fn describe(rule: &Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::kernel | Rule::kw_kernel => "`kernel`",
        Rule::attribute => "an attribute",
        Rule::ident => "a name",
        Rule::expr
        | Rule::float
        | Rule::int
        | Rule::boolean
        | Rule::neg
        | Rule::not
        | Rule::call
        | Rule::slice => "an expression",
        Rule::let_stmt | Rule::var_stmt | Rule::assign_stmt | Rule::expr_stmt => "a statement",
        Rule::for_stmt => "a `for` loop",
        Rule::if_stmt => "an `if`",
        Rule::block => "a block `{ ... }`",
        Rule::grid => "`grid(...)`",
        Rule::params | Rule::param => "a parameter",
        Rule::tensor_type => "a tensor type",
        Rule::strides => "`strides[...]`",
        Rule::io => "`in`, `out` or `inout`",
        Rule::const_param => "a compile-time parameter",
        Rule::const_kind => "`int`, `bool` or `dtype`",
        Rule::dim => "a dimension (a name or an integer)",
        Rule::args | Rule::arg | Rule::named_arg => "an argument",
        Rule::range | Rule::range_len | Rule::range_step => "a range `start : +length`",
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::rem => "an operator",
        Rule::or | Rule::and | Rule::eq | Rule::ne | Rule::lt | Rule::le | Rule::gt | Rule::ge => {
            "an operator"
        }
        Rule::kw_else => "`else`",
        Rule::kw_let => "`let`",
        Rule::kw_var => "`var`",
        Rule::kw_for => "`for`",
        Rule::kw_if => "`if`",
        Rule::kw_in => "`in`",
        Rule::semi => "`;`",
        Rule::rbrace => "`}`",
        Rule::kw_step => "`step`",
        Rule::requires | Rule::kw_requires => "`requires`",
        _ => return None,
    })
}

/// Punctuation worth naming when the parser tried it at the failure.
const TOKENS: [&str; 11] = [")", "]", "}", ";", ",", "(", "[", "{", "=", ":", ".."];

/// Everything expected at the failure, tokens first, each once.
fn expected(err: &Error<Rule>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    if let Some(attempts) = err.parse_attempts() {
        // A literal token displays as its text (pest does not export the token type).
        for t in attempts.expected_tokens() {
            let token = t.to_string();
            if TOKENS.contains(&token.as_str()) {
                push(format!("`{token}`"));
            }
        }
    }
    if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
        let mut words: Vec<&str> = positives.iter().filter_map(describe).collect();
        words.sort();
        for w in words {
            push(w.to_string());
        }
    }
    // A name and a `(` each start an expression, and a `{` a block: listing them beside it says
    // nothing more.
    if out.iter().any(|n| n == "an expression") {
        out.retain(|n| n != "a name" && n != "`(`");
    }
    if out.iter().any(|n| n == "`{`") {
        out.retain(|n| n != "a block `{ ... }`");
    }
    out
}

fn one_of(names: &[String]) -> String {
    match names {
        [] => "unexpected input".into(),
        [one] => format!("expected {one}"),
        [rest @ .., last] => format!("expected {} or {last}", rest.join(", ")),
    }
}

/// The word (identifier characters) that ends at `end`, with its start.
fn word_before(source: &str, end: usize) -> Option<(usize, &str)> {
    let head = &source[..end];
    let start = head
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map(|(i, _)| i)?;
    Some((start, &head[start..]))
}

/// End of the last token before `pos`: where a missing `;` belongs.
fn end_of_previous_token(source: &str, pos: usize) -> usize {
    source[..pos].trim_end().len()
}

/// The innermost `(`, `[` or `{` still open at `pos` (comments are not skipped: a bracket in a
/// comment can misplace this hint, never the error itself).
fn unclosed_bracket(source: &str, pos: usize) -> Option<(usize, char)> {
    let mut stack = Vec::new();
    for (i, c) in source[..pos].char_indices() {
        match c {
            '(' | '[' | '{' => stack.push((i, c)),
            ')' | ']' | '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop()
}

pub(super) fn syntax_error(err: Error<Rule>, source: &str) -> Diagnostic {
    let (start, end) = match err.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let start = start.min(source.len());
    let names = expected(&err);
    let at_word = source[start..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    // `lett row = ...`: a name where a keyword was meant, followed by another name.
    let gap = end_of_previous_token(source, start);
    let keywords: Vec<String> = KEYWORDS.iter().map(|k| k.to_string()).collect();
    let misspelt = |wstart: usize, word: &str| {
        let kw = closest(word, &keywords).filter(|k| k != word)?;
        Some(Diagnostic::error(
            format!("syntax error: unknown word `{word}`"),
            Span::new(wstart, wstart + word.len()),
            format!("did you mean `{kw}`?"),
        ))
    };
    // `lett row = ...`: a name where a keyword was meant, followed by another name.
    if at_word && gap < start {
        if let Some(d) = word_before(source, gap).and_then(|(w, word)| misspelt(w, word)) {
            return d;
        }
    }
    // `require N <= BN`, `kernal k(...)`: the word the parser stopped at is the misspelt keyword.
    if at_word {
        let len = source[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(source.len() - start);
        let word = &source[start..start + len];
        let expects_keyword = names.is_empty()
            || closest(word, &keywords).is_some_and(|kw| names.contains(&format!("`{kw}`")));
        if expects_keyword {
            if let Some(d) = misspelt(start, word) {
                return d;
            }
        }
    }
    // A missing `;` or closing bracket belongs after the last token, not at the start of the
    // next line.
    let next_line = source[gap..start].contains('\n');
    if next_line && names.iter().any(|n| n == "`;`") {
        return Diagnostic::error(
            "syntax error: missing `;`",
            Span::new(gap, gap),
            "expected `;` here",
        );
    }
    let (start, end) = if next_line && names.iter().any(|n| n == "`)`" || n == "`]`") {
        (gap, gap)
    } else {
        (start, end)
    };
    let mut d = Diagnostic::error(
        "syntax error",
        Span::new(start, end.max(start)),
        one_of(&names),
    );
    if source[start..].starts_with('*') && source[..start].ends_with('*') {
        d = d.with_note("tessel has no `**`: write `x * x`, or exp(y * log(x)) for other powers");
    }
    // Where the text goes on with a statement's end (or stops), the open bracket is the mistake;
    // elsewhere (a bad parameter inside a list) the bracket is fine and the hint would mislead.
    let closer = [("`)`", '('), ("`]`", '['), ("`}`", '{')];
    let rest = source[start..].trim_start_matches([' ', '\t']);
    let ends = rest.is_empty() || rest.starts_with([';', '{', '}', '\n', '\r']) || next_line;
    if let Some((at, open)) = unclosed_bracket(source, start).filter(|_| ends) {
        if closer
            .iter()
            .any(|(n, o)| *o == open && names.contains(&n.to_string()))
        {
            d = d.with_secondary(
                Span::new(at, at + 1),
                format!("this `{open}` is not closed"),
            );
        }
    }
    d
}
