//! Diagnostics: an error with the source spans it is about, rendered with codespan-reporting
//! as the source line and a caret underline (plain text, so snapshots and logs stay readable).

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

use crate::syntax::ast::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    /// The span the error is about, with a short label.
    pub primary: (Span, String),
    /// Other places that explain it ("declared here").
    pub secondary: Vec<(Span, String)>,
    /// Hints, printed after the source excerpt.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            primary: (span, label.into()),
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Renders against the source it was produced from.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let file = SimpleFile::new(file_name, source);
        let clamp = |s: Span| {
            let end = s.end.min(source.len());
            s.start.min(end)..end
        };
        let mut labels =
            vec![Label::primary((), clamp(self.primary.0)).with_message(&self.primary.1)];
        labels.extend(
            self.secondary
                .iter()
                .map(|(s, m)| Label::secondary((), clamp(*s)).with_message(m)),
        );
        let diagnostic = CsDiagnostic::error()
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(self.notes.clone());
        let mut out = term::termcolor::NoColor::new(Vec::<u8>::new());
        match term::emit(&mut out, &Config::default(), &file, &diagnostic) {
            Ok(()) => String::from_utf8_lossy(&out.into_inner()).into_owned(),
            Err(_) => format!("error: {}\n", self.message),
        }
    }
}

/// Renders several diagnostics one after another.
pub fn render_all(diags: &[Diagnostic], file_name: &str, source: &str) -> String {
    diags.iter().map(|d| d.render(file_name, source)).collect()
}

/// The known name closest to `name` by edit distance, if it is close enough to be a typo: the
/// one "did you mean" of the front end and the command line.
pub fn closest(name: &str, candidates: &[String]) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        // Optimal string alignment: edits, plus swapping two neighbours (`fro` → `for`) as one.
        let a: Vec<char> = a.chars().collect();
        let mut before: Vec<usize> = Vec::new();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let mut d = (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
                if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                    d = d.min(before[j - 1] + 1);
                }
                cur.push(d);
            }
            before = std::mem::replace(&mut prev, cur);
        }
        prev[b.len()]
    }
    // Ties go to a candidate that differs only in case (`Bm` → `BM`, not `BK`).
    let lower = name.to_lowercase();
    candidates
        .iter()
        .map(|c| (distance(name, c), distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _, c)| *d <= name.len().max(c.len()).div_ceil(3))
        .min()
        .map(|(_, _, c)| c.clone())
}
