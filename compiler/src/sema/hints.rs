//! Schedule attributes (`@num_warps(8)`): each checked by the scheduler's own hint rules
//! ([`crate::sched::hints`]), so that a bad one is a diagnostic on its span here, and the same
//! rule refuses the same value given as a command-line flag. The accepted attributes are exactly
//! the hints the scheduler reads.

use super::elaborate::{err, Res};
use crate::sched::hints::{Hint, HintError, Hints, Origin};
use crate::syntax::ast::{Attribute, Span};

/// The attributes seen so far, checked.
#[derive(Default)]
pub(super) struct Checked {
    hints: Hints,
    spans: Vec<(Hint, Span)>,
    out: Vec<(String, Vec<i64>)>,
}

impl Checked {
    /// The hint `a` names: refused when tessel reads no such hint, or it is given twice.
    pub(super) fn name(&self, a: &Attribute) -> Res<Hint> {
        let Some(hint) = Hint::named(&a.name.name) else {
            let known: Vec<&str> = Hint::ALL.iter().map(|h| h.attribute()).collect();
            return Err(err(
                a.name.span,
                format!("unknown attribute `@{}`", a.name),
                "not an attribute tessel knows",
            )
            .with_note(format!("known attributes: {}", known.join(", "))));
        };
        if let Some((_, first)) = self.spans.iter().find(|(h, _)| *h == hint) {
            return Err(err(
                a.span,
                format!("attribute `@{}` is given twice", a.name),
                "repeated",
            )
            .with_secondary(*first, "first given here"));
        }
        Ok(hint)
    }

    /// Records `a`'s evaluated arguments, checked by `hint`'s rule.
    pub(super) fn add(&mut self, a: &Attribute, hint: Hint, args: Vec<i64>) -> Res<()> {
        self.hints
            .set(hint, &args, Origin::Attribute)
            .map_err(|e| diagnostic(a.span, e))?;
        self.spans.push((hint, a.span));
        self.out.push((a.name.name.clone(), args));
        Ok(())
    }

    /// The attributes as the Tile IR carries them, once they agree with each other.
    pub(super) fn finish(self) -> Res<Vec<(String, Vec<i64>)>> {
        if let Err(e) = self.hints.agree() {
            let span = self
                .spans
                .iter()
                .find(|(h, _)| *h == Hint::Warps)
                .map(|(_, s)| *s)
                .expect("only @warps disagrees");
            return Err(diagnostic(span, e));
        }
        Ok(self.out)
    }
}

fn diagnostic(span: Span, e: HintError) -> crate::diag::Diagnostic {
    err(span, format!("`{}` {}", e.name, e.reason), e.label)
}
